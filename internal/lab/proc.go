package lab

import (
	"bufio"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a process running in a lab namespace; the lab stops it when the
// test ends.
type Proc struct {
	Name  string
	quiet bool
	cmd   *exec.Cmd
	done  chan struct{}

	mu  sync.Mutex
	out []string // the last lines it wrote
}

// keepLines is how much of a process's output a Proc keeps for Output.
const keepLines = 200

// Start starts a process in the namespace. Its output goes to the test
// log, each line prefixed with name.
func (ns *NS) Start(name string, cmd string, args ...string) *Proc {
	ns.lab.t.Helper()
	return ns.startCmd(name, ns.Command(cmd, args...), false)
}

// Daemon is Start for a chatty process: its output is kept, and logged
// only if the test fails.
func (ns *NS) Daemon(name string, cmd string, args ...string) *Proc {
	ns.lab.t.Helper()
	return ns.startCmd(name, ns.Command(cmd, args...), true)
}

// StartCmd starts a command made with Command (so it can be given an
// environment or a directory first).
func (ns *NS) StartCmd(name string, cmd *exec.Cmd) *Proc {
	ns.lab.t.Helper()
	return ns.startCmd(name, cmd, false)
}

func (ns *NS) startCmd(name string, cmd *exec.Cmd, quiet bool) *Proc {
	l := ns.lab
	l.t.Helper()
	p := &Proc{Name: name, quiet: quiet, cmd: cmd, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("lab: start %s in %s: %v", name, ns.Name, err)
	}
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out = append(p.out, sc.Text())
			if len(p.out) > keepLines {
				p.out = p.out[len(p.out)-keepLines:]
			}
			p.mu.Unlock()
			if !quiet {
				l.t.Log(name+":", sc.Text())
			}
		}
	}()
	go func() {
		cmd.Wait()
		pw.Close()
		<-logged
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Output is the last lines the process wrote.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.out, "\n")
}

// Stop stops the process: SIGTERM, then SIGKILL if it has not exited
// within 15 s. It does nothing if the process has exited.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill stops the process with SIGKILL, as a crash would.
func (p *Proc) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}
