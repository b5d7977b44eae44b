// Command pause is the pod sandbox's process: it holds the pod's namespaces
// and does nothing else until it is told to stop, like registry.k8s.io/pause.
// It is static (CGO_ENABLED=0) so its image can be FROM scratch. As PID 1 of
// the pod's PID namespace (shareProcessNamespace) it also reaps orphans.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
