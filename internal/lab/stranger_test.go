package lab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"erg/fed"
	"erg/internal/testkit"
	"erg/nodetest"
	"erg/p2p"
)

// Plan, Target, Report and TargetReport mirror the stranger command's
// (internal/lab/stranger), which is a main package the test cannot import.
type strangerPlan struct {
	Relay     string           `json:"relay"`
	Targets   []strangerTarget `json:"targets"`
	Protocols []string         `json:"protocols"`
	Ping      []string         `json:"ping,omitempty"`
	PingCount int              `json:"pingCount,omitempty"`
}

type strangerTarget struct {
	Name  string   `json:"name"`
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
}

type strangerReport struct {
	RelayConnect string             `json:"relayConnect"`
	Reserve      string             `json:"reserve"`
	Pings        map[string][]int64 `json:"pings"`
	Targets      []struct {
		Name    string            `json:"name"`
		Circuit string            `json:"circuit"`
		Connect string            `json:"connect"`
		Via     string            `json:"via"`
		Streams map[string]string `json:"streams"`
	} `json:"targets"`
}

// advertised is every address n gives out: its own and its relayed ones,
// without the /p2p/<id> of n itself.
func advertised(n *nodetest.Node) []string {
	s := n.Status()
	seen := map[string]bool{}
	var out []string
	for _, a := range append(s.P2PAddrs, s.ReachableAddrs...) {
		a = strings.TrimSuffix(a, "/p2p/"+s.PeerID)
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// runStranger runs the stranger command in namespace ns with plan and
// returns its report.
func runStranger(t *testing.T, ns *NS, plan strangerPlan) strangerReport {
	t.Helper()
	bin := testkit.GoBuild(t, "./internal/lab/stranger", filepath.Join(testkit.Dir(t), "bin", "stranger"))
	js, _ := json.Marshal(plan)
	cmd := ns.Command(bin, string(js))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("stranger: %v\n%s", err, stderr.String())
	}
	var rep strangerReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("stranger's report: %v\n%s", err, out)
	}
	if len(plan.Ping) == 0 {
		t.Logf("stranger: %s", bytes.TrimSpace(out))
	}
	return rep
}

// answersAt checks that a libp2p host in ns that no one befriended (the
// stranger command) connects to n at each of addrs (n's full multiaddrs,
// with /p2p/<id>), at that address alone: whether n is right to say its
// router maps them. relay is R's address, which the command connects to
// first.
func answersAt(t *testing.T, ns *NS, relay string, n *nodetest.Node, addrs []string) error {
	t.Helper()
	id := n.Status().PeerID
	var errs []error
	for _, a := range addrs {
		rep := runStranger(t, ns, strangerPlan{Relay: relay,
			Targets: []strangerTarget{{Name: n.Name, ID: id, Addrs: []string{strings.TrimSuffix(a, "/p2p/"+id)}}}})
		if len(rep.Targets) != 1 {
			errs = append(errs, fmt.Errorf("%s: the stranger's report has %d targets", a, len(rep.Targets)))
		} else if c := rep.Targets[0].Connect; c != "" {
			errs = append(errs, fmt.Errorf("%s: %s", a, c))
		}
	}
	return errors.Join(errs...)
}

// strangerGetsNothing is scenario 6: a libp2p host on the internet that
// no one befriended (it has no invite code) can connect to R, which is
// public, but R refuses it a reservation and a circuit to A; A and B,
// behind their NATs, it cannot reach at all; C, which its router maps,
// it can connect to, and C resets its federation and dial-back streams.
func strangerGetsNothing(t *testing.T, w *world) {
	plan := strangerPlan{
		Relay:     publicAddr(t, w.r, RAddr), // with /p2p/<R>
		Protocols: []string{fed.CapnpProtocol, p2p.DialBackProtocol},
	}
	for _, n := range []*nodetest.Node{w.a, w.b, w.c} {
		plan.Targets = append(plan.Targets, strangerTarget{Name: n.Name, ID: n.Status().PeerID, Addrs: advertised(n)})
	}
	rep := runStranger(t, w.Stranger, plan)
	if rep.RelayConnect != "" {
		t.Fatalf("the stranger could not even connect to R, so nothing below says R refused it: %s", rep.RelayConnect)
	}
	if !strings.Contains(rep.Reserve, "PERMISSION_DENIED") {
		t.Errorf("R's answer to a stranger's reservation: %q, want PERMISSION_DENIED", rep.Reserve)
	}
	byName := map[string]int{}
	for i, tr := range rep.Targets {
		byName[tr.Name] = i
	}
	for _, n := range []*nodetest.Node{w.a, w.b, w.c} {
		i, ok := byName[n.Name]
		if !ok {
			t.Fatalf("the stranger's report has no %s", n.Name)
		}
		tr := rep.Targets[i]
		if !strings.Contains(tr.Circuit, "PERMISSION_DENIED") {
			t.Errorf("a circuit through R to %s: %q, want R to refuse it (PERMISSION_DENIED)", n.Name, tr.Circuit)
		}
		switch n {
		case w.a, w.b:
			if tr.Connect == "" {
				t.Errorf("the stranger connected to %s behind its NAT (via %s)", n.Name, tr.Via)
			}
		case w.c:
			if tr.Connect != "" {
				t.Errorf("the stranger could not connect to C at its mapped address, so nothing says C refuses its streams: %s", tr.Connect)
				continue
			}
			if !strings.Contains(tr.Via, "/ip4/"+w.C.WAN+"/") {
				t.Errorf("the stranger reached C via %s, want C's router (%s)", tr.Via, w.C.WAN)
			}
			if len(tr.Streams) != len(plan.Protocols) {
				t.Errorf("the stranger tried %v on C, want each of %v", tr.Streams, plan.Protocols)
			}
		}
		for p, res := range tr.Streams {
			if res == "open" || !strings.Contains(res, "reset") {
				t.Errorf("%s's %s stream for a stranger: %q, want it reset", n.Name, p, res)
			}
		}
	}
}
