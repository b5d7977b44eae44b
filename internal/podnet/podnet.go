//go:build linux

// Package podnet gives a test a pod's network on this machine: a network
// namespace that owns the pod's IP, joined to the host by a veth pair, with a
// host route for that IP into it. Servers listen inside it, so a client on the
// host (the API server, a probe) really crosses the veth, and nothing sent to
// the IP ever leaves the machine.
//
// It shells out to iproute2's `ip`: the same commands an operator would type
// to reproduce a test by hand.
package podnet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/vishvananda/netns"
)

// GuardPrefix is the range that kwok gives pods and Services in the local
// cluster. Guard routes it to `unreachable` so that an address in it with no
// pod network behind it fails at once instead of leaving through the
// default gateway.
var GuardPrefix = netip.MustParsePrefix("10.0.0.0/16")

// GuardPrefix6 is the IPv6 range tests give pods (a unique local range,
// fd77::/64); Guard routes it to `unreachable` as well.
var GuardPrefix6 = netip.MustParsePrefix("fd77::/64")

// HostAddr6 is the host's own address on the veth of an IPv6 pod: the
// host has none towards the pod otherwise, and neighbour discovery needs
// one to answer from.
var HostAddr6 = netip.MustParseAddr("fd77::1")

// Guard installs the unreachable routes for GuardPrefix and GuardPrefix6 if
// they are not there. They are left in place on purpose: other test
// processes may rely on them, and they route ranges nothing on this machine
// uses.
func Guard() error {
	for _, g := range []struct{ fam, prefix string }{{"-4", GuardPrefix.String()}, {"-6", GuardPrefix6.String()}} {
		out, err := run("ip", g.fam, "route", "show", "exact", g.prefix)
		if err != nil {
			return err
		}
		if strings.Contains(out, "unreachable") {
			continue
		}
		if _, err := run("ip", g.fam, "route", "add", "unreachable", g.prefix); err != nil && !strings.Contains(err.Error(), "File exists") {
			return fmt.Errorf("guarding %s: %w", g.prefix, err)
		}
	}
	return nil
}

// Pod is one pod's network namespace.
type Pod struct {
	Name     string     // network namespace name
	Addr     netip.Addr // the pod IP, inside the namespace
	HostLink string     // host side of the veth (a branch pod's: its VLAN device)
	IfIndex  int        // its interface index
	trunk    string     // a branch pod's host veth, under its VLAN device
	table    string     // a branch pod's routing table
}

var seq atomic.Uint32

// New creates a namespace owning addr and routes addr into it from the host.
// name is a short tag for the namespace (made unique per process).
func New(name string, addr netip.Addr) (_ *Pod, err error) {
	if !addr.IsValid() {
		return nil, errors.New("creating pod network: no address")
	}
	n := seq.Add(1)
	p := &Pod{
		Name:     fmt.Sprintf("hs-%s-%d-%d", name, os.Getpid(), n),
		Addr:     addr,
		HostLink: fmt.Sprintf("hsv%d%d", os.Getpid()%100000, n),
	}
	if len(p.HostLink) > 15 {
		p.HostLink = p.HostLink[:15]
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	bits, fam := 32, "-4"
	if addr.Is6() && !addr.Is4In6() {
		bits, fam = 128, "-6"
	}
	cidr := netip.PrefixFrom(addr, bits).String()
	steps := [][]string{
		{"ip", "netns", "add", p.Name},
		{"ip", "link", "add", p.HostLink, "type", "veth", "peer", "name", "eth0", "netns", p.Name},
		{"ip", "-n", p.Name, "link", "set", "lo", "up"},
		{"ip", "-n", p.Name, fam, "addr", "add", cidr, "dev", "eth0", "nodad"},
		{"ip", "-n", p.Name, "link", "set", "eth0", "up"},
		// The host answers neighbour requests for its own addresses on any
		// link, so a device route is all the namespace needs to reach it.
		{"ip", "-n", p.Name, fam, "route", "add", "default", "dev", "eth0"},
		{"ip", "link", "set", p.HostLink, "up"},
		{"ip", fam, "route", "replace", cidr, "dev", p.HostLink},
	}
	if fam == "-6" {
		if !GuardPrefix6.Contains(addr) {
			return nil, fmt.Errorf("creating pod network for %s: IPv6 pods must be in %s, which Guard routes to unreachable", addr, GuardPrefix6)
		}
		steps = append(steps, []string{"ip", "-6", "addr", "add", HostAddr6.String() + "/128", "dev", p.HostLink, "nodad"})
	}
	for _, s := range steps {
		if _, err := run(s[0], s[1:]...); err != nil {
			return nil, fmt.Errorf("creating pod network for %s: %w", addr, err)
		}
	}
	ifc, err := net.InterfaceByName(p.HostLink)
	if err != nil {
		return nil, fmt.Errorf("creating pod network for %s: finding %s: %w", addr, p.HostLink, err)
	}
	p.IfIndex = ifc.Index
	return p, nil
}

// NewBranch creates a pod the way security groups for pods wire one on EKS:
// its traffic is tagged with a VLAN on the link into its namespace (a
// branch ENI on the node's trunk), the host side of the pod is a VLAN
// device, not a veth, and the route to the pod IP is in a table of its own
// that an ip rule selects. HostLink and IfIndex name the VLAN device.
func NewBranch(name string, addr netip.Addr, vlan int) (_ *Pod, err error) {
	if !addr.Is4() {
		return nil, errors.New("creating branch pod network: an IPv4 address")
	}
	n := seq.Add(1)
	trunk := fmt.Sprintf("hst%d%d", os.Getpid()%100000, n)
	if len(trunk) > 12 {
		trunk = trunk[:12]
	}
	p := &Pod{Name: fmt.Sprintf("hs-%s-%d-%d", name, os.Getpid(), n), Addr: addr, HostLink: fmt.Sprintf("%s.%d", trunk, vlan)}
	p.table = strconv.Itoa(1000 + vlan)
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	cidr := netip.PrefixFrom(addr, 32).String()
	id := strconv.Itoa(vlan)
	for _, s := range [][]string{
		{"ip", "netns", "add", p.Name},
		{"ip", "link", "add", trunk, "type", "veth", "peer", "name", "eth0", "netns", p.Name},
		{"ip", "-n", p.Name, "link", "set", "lo", "up"},
		{"ip", "-n", p.Name, "link", "set", "eth0", "up"},
		{"ip", "-n", p.Name, "link", "add", "link", "eth0", "name", "eth0." + id, "type", "vlan", "id", id},
		{"ip", "-n", p.Name, "addr", "add", cidr, "dev", "eth0." + id},
		{"ip", "-n", p.Name, "link", "set", "eth0." + id, "up"},
		{"ip", "-n", p.Name, "route", "add", "default", "dev", "eth0." + id},
		{"ip", "link", "set", trunk, "up"},
		{"ip", "link", "add", "link", trunk, "name", p.HostLink, "type", "vlan", "id", id},
		{"ip", "link", "set", p.HostLink, "up"},
		{"ip", "route", "replace", cidr, "dev", p.HostLink, "table", p.table},
		{"ip", "rule", "add", "to", cidr, "lookup", p.table, "priority", "10"},
	} {
		if _, err := run(s[0], s[1:]...); err != nil {
			return nil, fmt.Errorf("creating branch pod network for %s: %w", addr, err)
		}
	}
	p.trunk = trunk
	ifc, err := net.InterfaceByName(p.HostLink)
	if err != nil {
		return nil, fmt.Errorf("creating branch pod network for %s: finding %s: %w", addr, p.HostLink, err)
	}
	p.IfIndex = ifc.Index
	return p, nil
}

// NewHost gives the host itself addr, on an interface of its own (a veth
// whose peer stays on the host: kernels without dummy devices have it): the
// address of a hostNetwork pod (its node's), which a client on the host
// reaches over loopback. It has no namespace: Listen binds in the host's.
// addr must be in GuardPrefix, so that nothing leaves the machine once the
// interface is gone.
func NewHost(name string, addr netip.Addr) (_ *Pod, err error) {
	if !GuardPrefix.Contains(addr) {
		return nil, fmt.Errorf("creating host address %s: it must be in %s, which Guard routes to unreachable", addr, GuardPrefix)
	}
	n := seq.Add(1)
	p := &Pod{Addr: addr, HostLink: fmt.Sprintf("hsh%d%d", os.Getpid()%100000, n)}
	if len(p.HostLink) > 14 { // and its peer's name, one longer
		p.HostLink = p.HostLink[:14]
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	for _, s := range [][]string{
		{"ip", "link", "add", p.HostLink, "type", "veth", "peer", "name", p.HostLink + "p"},
		{"ip", "addr", "add", addr.String() + "/32", "dev", p.HostLink},
		{"ip", "link", "set", p.HostLink, "up"},
		{"ip", "link", "set", p.HostLink + "p", "up"},
	} {
		if _, err := run(s[0], s[1:]...); err != nil {
			return nil, fmt.Errorf("creating host address %s (%s): %w", addr, name, err)
		}
	}
	ifc, err := net.InterfaceByName(p.HostLink)
	if err != nil {
		return nil, fmt.Errorf("creating host address %s: finding %s: %w", addr, p.HostLink, err)
	}
	p.IfIndex = ifc.Index
	return p, nil
}

// Listen opens a TCP listener inside the namespace. The socket stays in the
// namespace; the calling goroutine's thread is switched back before return.
func (p *Pod) Listen(port int) (net.Listener, error) {
	if p.Name == "" { // NewHost: the host's own address
		return net.Listen("tcp", netip.AddrPortFrom(p.Addr, uint16(port)).String())
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("listening in %s: reading own namespace: %w", p.Name, err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(p.Name)
	if err != nil {
		return nil, fmt.Errorf("listening in %s: %w", p.Name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return nil, fmt.Errorf("listening in %s: entering namespace: %w", p.Name, err)
	}
	ln, lerr := net.Listen("tcp", netip.AddrPortFrom(p.Addr, uint16(port)).String())
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace: never hand it back to Go.
		runtime.LockOSThread()
		return nil, fmt.Errorf("listening in %s: returning to own namespace: %w", p.Name, err)
	}
	if lerr != nil {
		return nil, fmt.Errorf("listening in %s: %w", p.Name, lerr)
	}
	return ln, nil
}

// Close removes the host route, the veth and the namespace.
func (p *Pod) Close() error {
	var errs []error
	bits := "32"
	if p.Addr.Is6() && !p.Addr.Is4In6() {
		bits = "128"
	}
	// Deleting the namespace deletes the veth pair and with it the route;
	// delete them explicitly anyway so a half-made pod is cleaned up too.
	steps := [][]string{
		{"ip", "route", "del", p.Addr.String() + "/" + bits, "dev", p.HostLink},
		{"ip", "link", "del", p.HostLink},
		{"ip", "netns", "del", p.Name},
	}
	if p.Name == "" { // NewHost: its veth holds the address
		steps = [][]string{{"ip", "link", "del", p.HostLink}}
	}
	if p.table != "" {
		steps = [][]string{
			{"ip", "rule", "del", "to", p.Addr.String() + "/32", "lookup", p.table},
			{"ip", "route", "flush", "table", p.table},
			{"ip", "link", "del", p.HostLink},
			{"ip", "link", "del", p.trunk},
			{"ip", "netns", "del", p.Name},
		}
	}
	for _, s := range steps {
		if _, err := run(s[0], s[1:]...); err != nil && !missing(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func missing(err error) bool {
	s := err.Error()
	return strings.Contains(s, "No such") || strings.Contains(s, "Cannot find") || strings.Contains(s, "does not exist")
}

func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}
