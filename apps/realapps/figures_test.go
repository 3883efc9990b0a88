package realapps

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"erg/nodetest"
)

// figuresEnv, set to 1, makes the Figures tests run (make bench-apps-real).
const figuresEnv = "ERG_REAL_FIGURES"

// plainRun is how an app starts outside a sandbox, from the app tree
// `make apps-real` built: the command and environment, given the tree, a
// fresh data dir standing in for /var and a port.
type plainRun func(tree, data string, port int) (*exec.Cmd, string)

// figures measures one real app, each figure beside its baseline: cold
// start of a new grain to its first HTTP 200 through the node's proxy vs
// the same app started plainly on the host (no sandbox) to its first 200,
// the memory (RSS) of the running grain's processes vs the plain run's,
// the package's size and its install time. grainProcess ends the command
// line of the grain's processes (whose interpreter's path may be a link's).
func figures(t *testing.T, name, path string, rounds int, plain plainRun, grainProcess string) {
	file := packageFile(t, name)
	if os.Getenv(figuresEnv) != "1" {
		t.Skipf("%s is not 1: run `make bench-apps-real`", figuresEnv)
	}
	tree := filepath.Join(filepath.Dir(os.Getenv(packagesEnv)), "apps-real", name)
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	env := nodetest.New(t)
	a := env.Node("anode")
	app, installTook := install(t, a, file)

	var cold, base []time.Duration
	var grainRSS, plainRSS int64
	for i := range rounds {
		// From before the grain exists: whether creating it or the first
		// request starts its sandbox, the start is inside the figure.
		t0 := time.Now()
		g := a.NewGrain(app.ID, fmt.Sprint("bench ", i))
		w := a.Open(g)
		await200(t, w, path)
		cold = append(cold, time.Since(t0))
		if i == 0 {
			time.Sleep(time.Second) // let it settle after the first page
			grainRSS = rssOf(func(cmd string) bool { return strings.HasSuffix(cmd, grainProcess) })
		}
		a.Client().RemoveGrain(t.Context(), g.ID)

		data := t.TempDir()
		port := freePort(t)
		cmd, match := plain(tree, data, port)
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Since(start) > time.Minute {
				t.Fatalf("the plain %s never answered", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
		base = append(base, time.Since(start))
		if i == 0 {
			time.Sleep(time.Second)
			plainRSS = rssOf(func(c string) bool { return strings.Contains(c, match) })
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	t.Logf("FIGURES %s: cold start to first 200 p50 %v (through the proxy, new grain) vs %v plain on the host; ratio %.2f",
		name, median(cold).Round(time.Millisecond), median(base).Round(time.Millisecond), float64(median(cold))/float64(median(base)))
	t.Logf("FIGURES %s: memory of a running grain %.1f MB RSS vs %.1f MB plain", name, float64(grainRSS)/(1<<20), float64(plainRSS)/(1<<20))
	t.Logf("FIGURES %s: package %.1f MB, install %v (from the file, verify and unpack)", name, float64(st.Size())/(1<<20), installTook.Round(time.Millisecond))
	t.Logf("FIGURES %s: all cold starts %v, plain %v", name, cold, base)
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// rssOf sums the resident memory of the host's processes whose command
// line (arguments joined by spaces) match says yes to.
func rssOf(match func(cmdline string) bool) int64 {
	var total int64
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !match(string(bytes.TrimRight(bytes.ReplaceAll(b, []byte{0}, []byte{' '}), " "))) {
			continue
		}
		status, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		for _, l := range strings.Split(string(status), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}

func TestFiguresTiddlyWiki(t *testing.T) {
	figures(t, "tiddlywiki", "/", 3, func(tree, data string, port int) (*exec.Cmd, string) {
		start := filepath.Join(tree, "app", "start.js")
		cmd := exec.Command("/usr/bin/node", start)
		cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "TIDDLYWIKI_HOME="+filepath.Join(tree, "app", "tiddlywiki"), "TIDDLYWIKI_WIKI="+filepath.Join(data, "wiki"))
		return cmd, start
	}, "/usr/bin/node /app/start.js")
}

func TestFiguresRadicale(t *testing.T) {
	figures(t, "radicale", "/.web/", 3, func(tree, data string, port int) (*exec.Cmd, string) {
		start := filepath.Join(tree, "app", "start.py")
		cmd := exec.Command("/usr/bin/python3", "-S", "-B", start)
		cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "RADICALE_ROOT="+filepath.Join(data, "collections"),
			"PYTHONPATH="+filepath.Join(tree, "app", "radicale", "usr", "lib", "python3", "dist-packages"), "PYTHONDONTWRITEBYTECODE=1")
		return cmd, start
	}, "/usr/bin/python3 -S -B /app/start.py")
}

func TestFiguresMediaWiki(t *testing.T) {
	figures(t, "mediawiki", "/index.php/Main_Page", 3, func(tree, data string, port int) (*exec.Cmd, string) {
		cmd := exec.Command("/usr/bin/php", filepath.Join(tree, "app", "start.php"))
		cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "MW_INSTALL_PATH="+filepath.Join(tree, "app", "mediawiki"), "MW_ERG_VAR="+filepath.Join(data, "mediawiki"))
		return cmd, filepath.Join(tree, "app", "router.php")
	}, " -t /app/mediawiki /app/router.php")
}

func TestFiguresEtherpad(t *testing.T) {
	figures(t, "etherpad", "/p/pad", 3, func(tree, data string, port int) (*exec.Cmd, string) {
		// The package's settings.json with its /var paths moved to data.
		root := filepath.Join(tree, "app", "etherpad")
		b, err := os.ReadFile(filepath.Join(root, "settings.json"))
		if err != nil {
			t.Fatal(err)
		}
		settings := filepath.Join(data, "settings.json")
		if err := os.WriteFile(settings, bytes.ReplaceAll(b, []byte(`"/var/`), []byte(`"`+data+`/`)), 0o644); err != nil {
			t.Fatal(err)
		}
		server := filepath.Join(root, "src", "node", "server.js")
		cmd := exec.Command("/usr/bin/node", server, "--settings", settings,
			"--sessionkey", filepath.Join(data, "SESSIONKEY.txt"), "--apikey", filepath.Join(data, "APIKEY.txt"))
		cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
		return cmd, server
	}, "--apikey /var/APIKEY.txt")
}
