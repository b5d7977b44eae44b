// Command backend is the game day's webhook server as a pod, for the kind
// provider: chaos/backend's admission server on the webhook port, driven by
// the game day through a plain HTTP control port (backend.Agent: serve a
// certificate, delay or hang answers, close the port, fail readiness). It
// holds no certificate until the game day sends one.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/hookscope/hookscope/chaos/backend"
)

func main() {
	listen := flag.String("listen", ":8443", "the webhook's HTTPS address")
	control := flag.String("control", ":9444", "address of the control API")
	flag.Parse()
	srv := &http.Server{Addr: *control, Handler: backend.NewAgent(*listen).Handler(), ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintf(os.Stderr, "backend: control API: %v\n", err)
		os.Exit(1)
	}
}
