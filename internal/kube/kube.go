// Package kube is the agent's way to the API server: a REST client per API
// group version the agent reads, decoding with a scheme of only those groups,
// and the dynamic client for the rest (CRDs, APIServices, cert-manager).
//
// It exists for the agent's size. client-go's typed clientset, its informer
// factory, its leader election and event sinks all import
// k8s.io/client-go/kubernetes/scheme, whose init registers every API group
// Kubernetes has: it cost the agent about 22 MB of binary (60 MB with it,
// 38 MB without, measured), and their resident pages on every node, for
// groups it never reads. Nothing here imports it; internal/layout's tests
// keep it so.
package kube

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Scheme holds the API groups the agent reads as typed objects.
var Scheme = runtime.NewScheme()

var (
	codecs         serializer.CodecFactory
	parameterCodec runtime.ParameterCodec
)

func init() {
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, admissionregistrationv1.AddToScheme, appsv1.AddToScheme,
		autoscalingv2.AddToScheme, batchv1.AddToScheme, coordinationv1.AddToScheme,
		discoveryv1.AddToScheme, networkingv1.AddToScheme, policyv1.AddToScheme,
	} {
		utilruntime.Must(add(Scheme))
	}
	codecs = serializer.NewCodecFactory(Scheme)
	parameterCodec = runtime.NewParameterCodec(Scheme)
	for gvk := range Scheme.AllKnownTypes() {
		if strings.HasSuffix(gvk.Kind, "List") {
			continue
		}
		r, _ := meta.UnsafeGuessKindToResource(gvk)
		if _, taken := kinds[r]; !taken {
			kinds[r] = gvk.Kind
		}
	}
}

// Typed says whether the agent reads r as typed objects (its group version
// is in Scheme); the others are read as unstructured.
func Typed(r schema.GroupVersionResource) bool {
	return Scheme.IsVersionRegistered(r.GroupVersion())
}

// API is what the agent's packages ask of the API server. Client is the real
// one; kubefake serves unit tests from client-go's fake clientset. Objects of
// a Typed resource are read into their typed struct, the others into
// *unstructured.Unstructured (and lists into *unstructured.UnstructuredList).
type API interface {
	// ListWatch lists and watches r in namespace ("" for all), with tweak
	// (nil for none) applied to every request's options.
	ListWatch(r schema.GroupVersionResource, namespace string, tweak func(*metav1.ListOptions)) cache.ListerWatcher
	Get(ctx context.Context, r schema.GroupVersionResource, namespace, name string, into runtime.Object) error
	List(ctx context.Context, r schema.GroupVersionResource, namespace string, opts metav1.ListOptions, into runtime.Object) error
	Create(ctx context.Context, r schema.GroupVersionResource, namespace string, obj, into runtime.Object) error
	Update(ctx context.Context, r schema.GroupVersionResource, namespace string, obj, into runtime.Object) error
	Patch(ctx context.Context, r schema.GroupVersionResource, namespace, name string, pt types.PatchType, data []byte, into runtime.Object) error
	// Raw GETs path (such as /metrics or /version) with the Accept header
	// accept; the caller closes the body.
	Raw(ctx context.Context, path, accept string) (io.ReadCloser, error)
}

// Client is API on a real API server.
type Client struct {
	*clients
	fieldManager string // names the writer in the objects' managedFields
}

// clients are a Client's connections, shared by its copies (As).
type clients struct {
	cfg     *rest.Config
	dynamic *dynamic.DynamicClient

	mu   sync.Mutex
	rest map[schema.GroupVersion]*rest.RESTClient
}

var _ API = (*Client)(nil)

// New builds the clients from a copy of cfg (nothing is dialled yet).
func New(cfg *rest.Config) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the dynamic client: %w", err)
	}
	return &Client{clients: &clients{cfg: cfg, dynamic: d, rest: map[schema.GroupVersion]*rest.RESTClient{}}}, nil
}

// As is c writing as fieldManager: the name an operator reads in the
// managedFields of what it changed (the guard's "hookscope-guard").
func (c *Client) As(fieldManager string) *Client {
	return &Client{clients: c.clients, fieldManager: fieldManager}
}

// client is the REST client of gv, built on first use.
func (c *clients) client(gv schema.GroupVersion) (*rest.RESTClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rc, ok := c.rest[gv]; ok {
		return rc, nil
	}
	cfg := rest.CopyConfig(c.cfg)
	cfg.GroupVersion = &gv
	cfg.APIPath = "/apis"
	if gv.Group == "" {
		cfg.APIPath = "/api"
	}
	cfg.NegotiatedSerializer = codecs.WithoutConversion()
	// Protobuf: a third of JSON's bytes to read, and far less garbage
	// decoding a large object (a namespaceSelector of thousands of values).
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the client of %s: %w", gv, err)
	}
	c.rest[gv] = rc
	return rc, nil
}

// resource is the dynamic client of r in namespace.
func (c *Client) resource(r schema.GroupVersionResource, namespace string) dynamic.ResourceInterface {
	if namespace == "" {
		return c.dynamic.Resource(r)
	}
	return c.dynamic.Resource(r).Namespace(namespace)
}

// request starts a request of verb on r in namespace, or says why it cannot.
func (c *Client) request(verb string, r schema.GroupVersionResource, namespace string) (*rest.Request, error) {
	rc, err := c.client(r.GroupVersion())
	if err != nil {
		return nil, err
	}
	return rc.Verb(verb).NamespaceIfScoped(namespace, namespace != "").Resource(r.Resource), nil
}

func (c *Client) ListWatch(r schema.GroupVersionResource, namespace string, tweak func(*metav1.ListOptions)) cache.ListerWatcher {
	if tweak == nil {
		tweak = func(*metav1.ListOptions) {}
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			list, err := newList(r)
			if err != nil {
				return nil, err
			}
			return list, c.List(ctx, r, namespace, o, list)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return c.watch(ctx, r, namespace, o)
		},
	}
}

// watch watches r in namespace from o's resourceVersion.
func (c *Client) watch(ctx context.Context, r schema.GroupVersionResource, namespace string, o metav1.ListOptions) (watch.Interface, error) {
	if !Typed(r) {
		return c.resource(r, namespace).Watch(ctx, o)
	}
	o.Watch = true
	req, err := c.request("GET", r, namespace)
	if err != nil {
		return nil, err
	}
	return req.VersionedParams(&o, parameterCodec).Watch(ctx)
}

// NewInformer is an informer of r in namespace ("" for all) through api,
// with tweak (nil for none) applied to its requests, caching objects of
// example's type (*unstructured.Unstructured for a resource that is not
// Typed) with indexers. It never resyncs, its logs name an unstructured
// resource by r, and it is not started.
func NewInformer(api API, r schema.GroupVersionResource, namespace string, tweak func(*metav1.ListOptions),
	example runtime.Object, indexers cache.Indexers) cache.SharedIndexInformer {
	o := cache.SharedIndexInformerOptions{Indexers: indexers}
	if !Typed(r) {
		o.ObjectDescription = r.String()
	}
	return cache.NewSharedIndexInformerWithOptions(api.ListWatch(r, namespace, tweak), example, o)
}

func (c *Client) Get(ctx context.Context, r schema.GroupVersionResource, namespace, name string, into runtime.Object) error {
	if !Typed(r) {
		u, err := c.resource(r, namespace).Get(ctx, name, metav1.GetOptions{})
		return setUnstructured(u, err, into)
	}
	req, err := c.request("GET", r, namespace)
	if err != nil {
		return err
	}
	return req.Name(name).Do(ctx).Into(into)
}

func (c *Client) List(ctx context.Context, r schema.GroupVersionResource, namespace string, opts metav1.ListOptions, into runtime.Object) error {
	if !Typed(r) {
		u, err := c.resource(r, namespace).List(ctx, opts)
		if err != nil {
			return err
		}
		l, ok := into.(*unstructured.UnstructuredList)
		if !ok {
			return fmt.Errorf("listing %s: want an *unstructured.UnstructuredList, got %T", r, into)
		}
		*l = *u
		return nil
	}
	req, err := c.request("GET", r, namespace)
	if err != nil {
		return err
	}
	return req.VersionedParams(&opts, parameterCodec).Do(ctx).Into(into)
}

func (c *Client) Create(ctx context.Context, r schema.GroupVersionResource, namespace string, obj, into runtime.Object) error {
	req, err := c.typedOnly("POST", r, namespace)
	if err != nil {
		return err
	}
	return req.Body(obj).Do(ctx).Into(into)
}

func (c *Client) Update(ctx context.Context, r schema.GroupVersionResource, namespace string, obj, into runtime.Object) error {
	m, err := metaName(obj)
	if err != nil {
		return err
	}
	req, err := c.typedOnly("PUT", r, namespace)
	if err != nil {
		return err
	}
	return req.Name(m).Body(obj).Do(ctx).Into(into)
}

func (c *Client) Patch(ctx context.Context, r schema.GroupVersionResource, namespace, name string, pt types.PatchType, data []byte, into runtime.Object) error {
	req, err := c.typedOnly("PATCH", r, namespace)
	if err != nil {
		return err
	}
	return req.Name(name).SetHeader("Content-Type", string(pt)).Body(data).Do(ctx).Into(into)
}

func (c *Client) Raw(ctx context.Context, path, accept string) (io.ReadCloser, error) {
	rc, err := c.client(corev1.SchemeGroupVersion)
	if err != nil {
		return nil, err
	}
	return rc.Get().AbsPath(path).SetHeader("Accept", accept).Stream(ctx)
}

// typedOnly starts a write: the agent writes only objects of its scheme
// (Events, its Lease, and the guard's webhook configurations).
func (c *Client) typedOnly(verb string, r schema.GroupVersionResource, namespace string) (*rest.Request, error) {
	if !Typed(r) {
		return nil, fmt.Errorf("%s %s: the agent writes only the API groups it reads as typed objects", verb, r)
	}
	req, err := c.request(verb, r, namespace)
	if err == nil && c.fieldManager != "" {
		req = req.Param("fieldManager", c.fieldManager)
	}
	return req, err
}

// kinds maps each Typed resource to the Kind of its objects (init).
var kinds = map[schema.GroupVersionResource]string{}

// newList is an empty list of r: typed for a Typed resource, else
// unstructured.
func newList(r schema.GroupVersionResource) (runtime.Object, error) {
	if !Typed(r) {
		return &unstructured.UnstructuredList{}, nil
	}
	return Scheme.New(r.GroupVersion().WithKind(Kind(r) + "List"))
}

// Kind is the Kind of r's objects, or "" when r is not Typed.
func Kind(r schema.GroupVersionResource) string { return kinds[r] }

func metaName(obj runtime.Object) (string, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return "", fmt.Errorf("a %T has no name", obj)
	}
	return m.GetName(), nil
}

func setUnstructured(u *unstructured.Unstructured, err error, into runtime.Object) error {
	if err != nil {
		return err
	}
	out, ok := into.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("want an *unstructured.Unstructured, got %T", into)
	}
	*out = *u
	return nil
}
