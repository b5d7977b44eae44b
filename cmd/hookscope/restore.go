package main

import (
	"context"
	"fmt"
	"io"
	"os"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// restore puts back the webhook configuration or APIService a backup
// holds (remediate remove and ignore write them).
func restore(ctx context.Context, out io.Writer, o *writeOptions, path string) error {
	mode, err := o.mode()
	if err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading backup: %w", err)
	}
	var head metav1.TypeMeta
	if err := yaml.Unmarshal(b, &head); err != nil {
		return fmt.Errorf("reading backup %s: %w", path, err)
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	switch head.Kind {
	case "APIService":
		dyn, err := o.dynamicClient()
		if err != nil {
			return err
		}
		return restoreAPIService(ctx, out, mode, dyn, b, path)
	case "ValidatingWebhookConfiguration":
		var cfg admissionv1.ValidatingWebhookConfiguration
		if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
			return fmt.Errorf("reading backup %s: %w", path, err)
		}
		return restoreConfig(ctx, out, mode, head.Kind, c.AdmissionregistrationV1().ValidatingWebhookConfigurations(), &cfg, len(cfg.Webhooks))
	case "MutatingWebhookConfiguration":
		var cfg admissionv1.MutatingWebhookConfiguration
		if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
			return fmt.Errorf("reading backup %s: %w", path, err)
		}
		return restoreConfig(ctx, out, mode, head.Kind, c.AdmissionregistrationV1().MutatingWebhookConfigurations(), &cfg, len(cfg.Webhooks))
	}
	return fmt.Errorf("reading backup %s: kind %q is neither a webhook configuration nor an APIService", path, head.Kind)
}

// configClient is what restore needs of the typed client of either kind of
// webhook configuration.
type configClient[T metav1.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
}

// restoreConfig replaces the configuration if it exists, else creates it.
func restoreConfig[T metav1.Object](ctx context.Context, out io.Writer, mode, kind string, api configClient[T], cfg T, webhooks int) error {
	fmt.Fprintf(out, "%s/%s with %d webhooks will be put back as in the backup\n", kind, cfg.GetName(), webhooks)
	if mode == dryRunClient {
		notApplied(out, mode)
		return nil
	}
	dryRun := serverDryRun(mode)
	cur, err := api.Get(ctx, cfg.GetName(), metav1.GetOptions{})
	switch {
	case err == nil:
		cfg.SetResourceVersion(cur.GetResourceVersion())
		_, err = api.Update(ctx, cfg, metav1.UpdateOptions{DryRun: dryRun})
	case apierrors.IsNotFound(err):
		cfg.SetResourceVersion("")
		cfg.SetUID("")
		_, err = api.Create(ctx, cfg, metav1.CreateOptions{DryRun: dryRun})
	}
	if err != nil {
		return fmt.Errorf("restoring %s/%s: %w", kind, cfg.GetName(), err)
	}
	if mode == dryRunServer {
		notApplied(out, mode)
		return nil
	}
	fmt.Fprintf(out, "restored %s/%s\n", kind, cfg.GetName())
	return nil
}
