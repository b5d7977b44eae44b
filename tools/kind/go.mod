// Module kind holds the small programs hookscope's Docker set-up and kind node
// image need (the runc wrapper, the pause binary). It has no dependencies; the
// Kubernetes, CoreDNS and kindnetd binaries come from the modules beside it.
module hookscope.local/tools/kind

go 1.24.0
