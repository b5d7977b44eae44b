package agentcmd

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/hookscope/hookscope/agent"
	"github.com/hookscope/hookscope/dataplane"
	"github.com/hookscope/hookscope/findings"
	"github.com/hookscope/hookscope/internal/kube/kubefake"
)

// podSetWith is an agent pod set that knows one agent pod: on node at ip.
func podSetWith(t *testing.T, node, ip string) *agentPodSet {
	t.Helper()
	client := kubefake.New(nil, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hookscope-agent-x", Namespace: "hookscope"},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{PodIP: ip},
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := &agentPodSet{namespace: "hookscope"}
	p.watch(ctx, client, slog.New(slog.DiscardHandler))
	i := *p.informer.Load()
	if !cache.WaitForCacheSync(ctx.Done(), i.HasSynced) {
		t.Fatal("pod informer did not sync")
	}
	return p
}

func TestPeerLedgerReadsTheAgentOnTheBackendsNode(t *testing.T) {
	backend := netip.MustParseAddrPort("10.0.1.7:8443")
	want := dataplane.Ledger{Node: "n1", Traced: true, Open: 0, LastClosed: time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC),
		Arrivals: dataplane.Arrivals{Probes: dataplane.SYNs{SYNs: 3, Answered: 3, LastSYN: time.Date(2026, 12, 6, 3, 0, 1, 0, time.UTC)}}}
	var asked string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = r.URL.RequestURI()
		if r.URL.Query().Get("backend") != backend.String() {
			http.Error(w, "wrong backend", http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(want)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	read := podSetWith(t, "n1", "127.0.0.1").peerLedger(p)

	got, err := read(context.Background(), "n1", backend)
	if err != nil {
		t.Fatal(err)
	}
	if asked != "/ledger?backend=10.0.1.7%3A8443" || !got.Traced || got.Arrivals.Probes.SYNs != 3 || !got.LastClosed.Equal(want.LastClosed) {
		t.Errorf("asked %s, got %+v; want %+v", asked, got, want)
	}
	if _, err := read(context.Background(), "n2", backend); err == nil || !strings.Contains(err.Error(), "no agent known on node n2") {
		t.Errorf("a node with no agent: err %v", err)
	}
	if _, err := read(context.Background(), "n1", netip.MustParseAddrPort("10.0.1.8:8443")); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a backend the peer does not trace: err %v, want its 404", err)
	}
}

func TestPeerPortServesTheLedgerAndOptInFindings(t *testing.T) {
	a := agent.New(agent.Config{}, agent.Parts{Store: findings.NewStore(findings.Config{})}) // no data plane: it traces nothing
	for _, withFindings := range []bool{false, true} {
		srv, addr, err := servePeer("127.0.0.1:0", a, withFindings)
		if err != nil {
			t.Fatal(err)
		}
		findingsCode := http.StatusNotFound
		if withFindings { // --peer-findings: the findings too, nothing more
			findingsCode = http.StatusOK
		}
		for path, want := range map[string]int{
			"/ledger?backend=10.0.1.7:8443": http.StatusNotFound, // not traced here
			"/ledger?backend=nonsense":      http.StatusBadRequest,
			"/findings":                     findingsCode,
			"/webhooks":                     http.StatusNotFound,
			"/risks":                        http.StatusNotFound,
			"/metrics":                      http.StatusNotFound,
		} {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("--peer-findings=%v: GET %s: %d, want %d", withFindings, path, resp.StatusCode, want)
			}
			if want == http.StatusOK && !strings.Contains(string(body), `"open": []`) {
				t.Errorf("GET %s: %s", path, body)
			}
		}
		srv.Close()
	}
	if _, _, err := servePeer("256.0.0.1:1", a, false); err == nil || !strings.Contains(err.Error(), "peer port") {
		t.Errorf("a bad address: %v", err)
	}
	if port, ok := PeerPort("$(POD_IP):9478"); !ok || port != 9478 {
		t.Errorf("peerPort: %d %v", port, ok)
	}
	if _, ok := PeerPort(""); ok {
		t.Error("peerPort of no address is a port")
	}
}
