//go:build linux

package handshake

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestProgramPagedHeaders: a packet whose IP and TCP headers are in paged
// data, not in the skb's linear part, as some drivers and GRO deliver a
// forwarded segment. BPF_PROG_TEST_RUN only builds linear packets, so the
// frames go through a tap device with IFF_NAPI_FRAGS in a namespace of the
// test's own: the kernel puts each written buffer but the first in a page
// fragment, and the first here is empty. The program must pull the headers
// in (HeadersPulled) and read the handshake as from a linear packet.
func TestProgramPagedHeaders(t *testing.T) {
	r := newProgRig(t)
	r.inject = tapInjector(t, r.tr)
	r.handshakeToServerFlight(t, 0x1301)
	r.send(t, 0, ackFlag|pshFlag, append(record(20, []byte{1}), record(23, make([]byte, 19))...))
	es := r.events(t)
	if len(es) == 0 {
		t.Fatalf("no events from paged frames (counters %+v)", r.counters(t))
	}
	last := es[len(es)-1]
	if last.Kind != KindHandshakeRejected || !last.EncryptedAlert || !last.TLS13 || last.Cipher != 0x1301 {
		t.Fatalf("events %v; last %+v, want a TLS 1.3 rejection with an encrypted alert", kinds(es), last)
	}
	if last.Client != testClient || last.Server != testServer {
		t.Errorf("client %s server %s", last.Client, last.Server)
	}
	if c := r.counters(t); c.HeadersPulled == 0 {
		t.Fatalf("no headers pulled (counters %+v): the frames reached the program linear, so this test proved nothing", c)
	}
}

// tapInjector makes a namespace with a tap device (IFF_NAPI_FRAGS),
// attaches tr to it there, and returns a function that writes a frame to
// it as an empty buffer and the frame, so that all of it is paged. The
// frames are addressed to no address of the namespace, which does not
// forward: after the TC hook the kernel drops them.
func tapInjector(t *testing.T, tr *Tracer) func(testing.TB, []byte) {
	name := fmt.Sprintf("hs-paged-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic("cannot return to the test's network namespace: " + err.Error())
		}
	}()

	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no tun device: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	ifr, err := unix.NewIfreq("hstap0")
	if err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_NAPI | unix.IFF_NAPI_FRAGS)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		t.Fatalf("creating a tap device with IFF_NAPI_FRAGS: %v", err)
	}
	for _, args := range [][]string{
		{"addr", "add", "10.0.251.1/24", "dev", "hstap0"},
		{"link", "set", "hstap0", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ifc, err := net.InterfaceByName("hstap0")
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Attach(ifc.Index); err != nil {
		t.Fatal(err)
	}
	return func(t testing.TB, frame []byte) {
		t.Helper()
		if _, err := unix.Writev(fd, [][]byte{{}, frame}); err != nil {
			t.Fatalf("writing a frame to the tap device: %v", err)
		}
	}
}
