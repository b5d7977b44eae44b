//go:build linux

package main

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hookscope/hookscope/chaos"
	kubeapi "github.com/hookscope/hookscope/internal/kube"
)

// localCluster starts a real API server (the game day's local provider) for
// one test and deletes it afterwards.
func localCluster(t *testing.T, name string) (context.Context, *chaos.Local, kubernetes.Interface) {
	t.Helper()
	return chaos.LocalForTest(t, name, 3*time.Minute)
}

// restConfig is the client configuration of the kubeconfig at path.
func restConfig(path string) (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", path)
}

// callOutAPI is the API the inventory lists the local cluster's call-outs
// and pods with.
func callOutAPI(t *testing.T, local *chaos.Local) kubeapi.API {
	t.Helper()
	cfg, err := restConfig(local.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	api, err := kubeapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return api
}
