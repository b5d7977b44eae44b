// Package verify checks what a cluster operator applies from deploy/: the
// kustomize base, the Helm chart and the monitoring rules. It is its own
// module so that Helm and Prometheus stay out of hookscope's dependencies.
//
// Run it from this directory, as root (the cluster tests start a local
// kwokctl cluster as the root module's tests do); HOOKSCOPE_BIN names the
// built hookscope binary whose footprint is measured:
//
//	cd deploy/verify && HOOKSCOPE_BIN=$PWD/../../bin/hookscope go test -count=1 ./...
package verify
