package chaos

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// PortForward is a local port forwarded to a pod's port through the API
// server (as `kubectl port-forward` does): the game day reaches what runs
// in a kind cluster's pods over loopback only.
type PortForward struct {
	// Addr is the local end, 127.0.0.1:PORT.
	Addr string
	stop chan struct{}
	done chan struct{}
}

// ForwardPort forwards a free loopback port to port of pod ns/name and
// returns once it listens.
func ForwardPort(ctx context.Context, cfg *rest.Config, ns, name string, port int) (*PortForward, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s/%s: %w", ns, name, err)
	}
	url := client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(name).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	pf := &PortForward{stop: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, pf.stop, ready, io.Discard, io.Discard)
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s/%s: %w", ns, name, err)
	}
	errc := make(chan error, 1)
	go func() {
		defer close(pf.done)
		errc <- fw.ForwardPorts()
	}()
	select {
	case <-ready:
	case err := <-errc:
		return nil, fmt.Errorf("port-forward to %s/%s:%d: %w", ns, name, port, err)
	case <-ctx.Done():
		close(pf.stop)
		return nil, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		pf.Close()
		return nil, fmt.Errorf("port-forward to %s/%s:%d: no local port (%v)", ns, name, port, err)
	}
	pf.Addr = "127.0.0.1:" + strconv.Itoa(int(ports[0].Local))
	return pf, nil
}

// Close stops forwarding; it is safe to call on nil and more than once.
func (pf *PortForward) Close() {
	if pf == nil {
		return
	}
	select {
	case <-pf.stop:
	default:
		close(pf.stop)
	}
	<-pf.done
}
