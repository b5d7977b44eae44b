//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hookscope/hookscope/chaos"
)

// demoWebhook is the broken webhook: a ValidatingWebhookConfiguration
// "demo" that fails closed, for pods created in namespace chaos-demo with
// the label chaos.TargetLabel=demo (its namespaceSelector names that one
// namespace, so nothing else in the cluster goes through it).
var demoWebhook = chaos.WebhookSpec{Name: "demo", FailurePolicy: admissionv1.Fail}

// Bounds: the lab comes up in about 20 s warm; building the agent (no
// -agent) takes minutes on 2 cores.
const (
	startTimeout = 5 * time.Minute
	stopTimeout  = 90 * time.Second
	// closeSettle is how long the API server is given to read the close of
	// its kept-alive connection after the certificate changes, as in the
	// game day: a write racing the close fails with "broken pipe" instead
	// of the certificate's error.
	closeSettle = 300 * time.Millisecond
)

// serve is the background process: it brings the lab and the broken
// webhook up, records them in the state file, and holds them until SIGTERM
// (or SIGINT, SIGHUP), then stops all of it.
func serve(dir, agent string) int {
	st := &State{Pid: os.Getpid(), Dir: dir, Started: time.Now(), Binary: agent, LabDir: filepath.Join(dir, "lab")}
	if err := st.write(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stop, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer cancel()

	// The demo is the local provider's lab, whatever $PROVIDER the
	// Makefile passes on.
	os.Setenv("PROVIDER", "local")
	ctx, cancelStart := context.WithTimeout(stop, startTimeout)
	lab, wh, err := bringUp(ctx, st)
	cancelStart()
	if err != nil {
		st.Error = err.Error()
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
	} else {
		st.Ready, st.UpSeconds = true, time.Since(st.Started).Seconds()
		fmt.Fprintf(os.Stderr, "demo: up in %.1f s; waiting for SIGTERM\n", st.UpSeconds)
	}
	if werr := st.write(); werr != nil {
		fmt.Fprintln(os.Stderr, werr)
	}
	if err == nil {
		<-stop.Done()
		fmt.Fprintln(os.Stderr, "demo: stopping")
	}
	if err := tearDown(lab, wh, st); err != nil {
		fmt.Fprintf(os.Stderr, "demo: stopping: %v\n", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "demo: stopped")
	return 0
}

// bringUp starts the lab, deploys the webhook with a valid certificate,
// breaks it (an expired one), makes one write fail, and waits until the
// agent names the failure. It records each part in st as it starts, so a
// failure part way is torn down as well.
func bringUp(ctx context.Context, st *State) (*chaos.Lab, *chaos.Webhook, error) {
	if os.Geteuid() != 0 {
		return nil, nil, errNotRoot
	}
	lab, err := chaos.StartLab(ctx, chaos.LabOptions{Dir: st.LabDir, AgentBinary: st.Binary, CLIBinary: st.Binary})
	if err != nil {
		return nil, nil, err
	}
	st.Binary, st.Kubeconfig = lab.Binary, lab.Provider.Kubeconfig()
	st.AgentAPI, st.JaegerUI = lab.Agent.API(), lab.Jaeger.QueryURL()
	if st.APIServer, err = apiServerAddress(st.Kubeconfig); err != nil {
		return lab, nil, err
	}
	st.Processes = processesOf(st.Dir)
	if err := st.write(); err != nil {
		return lab, nil, err
	}

	wh, err := lab.DeployWebhook(ctx, demoWebhook)
	if err != nil {
		return lab, nil, err
	}
	st.Namespace, st.Configuration, st.Webhook = wh.Namespace, wh.Configuration(), wh.WebhookName
	st.Label = chaos.TargetLabel + "=" + demoWebhook.Name
	st.BackendIP = wh.PodIP.String()
	if ns := wh.NetworkNamespace(); ns != "" {
		st.NetworkNamespaces = []string{ns}
	}
	if err := st.write(); err != nil {
		return lab, wh, err
	}

	expired, err := wh.ExpiredCertificate()
	if err != nil {
		return lab, wh, err
	}
	if err := wh.Server.SetCertificate(expired); err != nil {
		return lab, wh, fmt.Errorf("serving the expired certificate: %w", err)
	}
	time.Sleep(closeSettle)
	st.WriteCommand = writeCommand(st)
	if st.WriteError, err = failingWrite(ctx, st, wh); err != nil {
		return lab, wh, err
	}
	f, err := lab.Agent.WaitForFinding(ctx, wh.WebhookName, "CertExpired", 30*time.Second)
	if err != nil {
		return lab, wh, fmt.Errorf("the agent did not name the expired certificate: %w (agent log %s)", err, lab.Agent.LogPath())
	}
	st.FindingClass, st.FindingEffect = f.Class, f.Effect
	st.Processes = processesOf(st.Dir)
	return lab, wh, nil
}

// writeCommand is the kubectl command of a write the webhook rejects: a pod
// in its namespace, with the label it selects.
func writeCommand(st *State) string {
	return fmt.Sprintf("kubectl -n %s run try --image=registry.k8s.io/pause:3.10 --restart=Never --labels=%s", st.Namespace, st.Label)
}

// failingWrite runs writeCommand as the user would (kubectl, with the
// demo's kubeconfig) and returns what the API server answered; without
// kubectl, the same write through the API.
func failingWrite(ctx context.Context, st *State, wh *chaos.Webhook) (string, error) {
	args := strings.Fields(st.WriteCommand)
	if _, err := exec.LookPath(args[0]); err != nil {
		if _, err := wh.Write(ctx); err != nil {
			return err.Error(), nil
		}
		return "", errors.New("a write through the broken webhook was admitted")
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+st.Kubeconfig)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return "", fmt.Errorf("a write through the broken webhook was admitted: %s", out)
	}
	return strings.TrimSpace(string(out)), nil
}

// apiServerAddress is the host:port of the API server the kubeconfig names.
func apiServerAddress(kubeconfig string) (string, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return "", fmt.Errorf("reading the kubeconfig: %w", err)
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		return "", fmt.Errorf("reading the API server's address: %w", err)
	}
	return u.Host, nil
}

// tearDown removes the webhook (and its network namespace) and stops the
// lab, then removes the lab's files.
func tearDown(lab *chaos.Lab, wh *chaos.Webhook, st *State) error {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	var errs []error
	if wh != nil {
		errs = append(errs, wh.Remove(ctx))
	}
	if lab != nil {
		errs = append(errs, lab.Stop(ctx))
	}
	errs = append(errs, os.RemoveAll(st.LabDir))
	return errors.Join(errs...)
}
