package realapps

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"erg"
	"erg/nodetest"
)

func TestMain(m *testing.M) { os.Exit(nodetest.Main(m)) }

// packagesEnv names the dir of signed packages `make apps-real` wrote.
const packagesEnv = "ERG_REAL_APPS"

// packageFile is the signed package of app name that `make apps-real`
// built, or skips the test when the real apps are not asked for.
func packageFile(t *testing.T, name string) string {
	t.Helper()
	nodetest.SkipShort(t, "the real apps")
	dir := os.Getenv(packagesEnv)
	if dir == "" {
		t.Skipf("%s is not set: run `make test-apps-real` to build the real apps and test them", packagesEnv)
	}
	p := filepath.Join(dir, name+".erg")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s names %s, but %v: run `make apps-real`", packagesEnv, dir, err)
	}
	return p
}

// install installs the package file on n and returns the app, timing it.
func install(t *testing.T, n *nodetest.Node, file string) (erg.App, time.Duration) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	app, err := n.Client().InstallPackage(context.Background(), f)
	if err != nil {
		t.Fatalf("install %s on %s: %v", file, n.Name, err)
	}
	return app, time.Since(start)
}

// keysEnv names the dir of the apps' signing keys (make's .erg-keys).
const keysEnv = "ERG_REAL_KEYS"

// publish puts the package in the app store from n with erg's own
// command, signing the listing with the app's key.
func publish(t *testing.T, n *nodetest.Node, file, tag string) {
	t.Helper()
	args := []string{"app", "publish", file, "--tag", tag}
	if dir := os.Getenv(keysEnv); dir != "" {
		args = append(args, "--key", filepath.Join(dir, strings.TrimSuffix(filepath.Base(file), ".erg")+".key"))
	}
	t.Logf("erg app publish: %s", n.CLI(args...))
}

// onTwoFriends installs the package of the real app name on a node a,
// publishes it in the store under tag and installs it from there on b, a
// friend of a's with owner bob, and makes a grain of it titled title on
// a.
func onTwoFriends(t *testing.T, name, tag, title string) (env *nodetest.Env, a, b *nodetest.Node, g erg.Grain) {
	t.Helper()
	file := packageFile(t, name)
	env = nodetest.New(t)
	a = env.Node("anode")
	b = env.Node("bnode", nodetest.Owner("bob"), nodetest.Bootstrap(a.Status().P2PAddrs[:1]...))
	env.Befriend(a, b)
	app, took := install(t, a, file)
	t.Logf("installed %s in %v", app.ID, took)
	viaStore(t, a, b, file, app.ID, tag)
	return env, a, b, a.NewGrain(app.ID, title)
}

// viaStore publishes the package from a, and installs it on b from the
// store by its app id, as `erg app install APPID` does.
func viaStore(t *testing.T, a, b *nodetest.Node, file, appID, tag string) {
	t.Helper()
	nodetest.Await(t, b.Name+" to join the DHT", func() bool {
		s, err := b.Client().Status(context.Background())
		return err == nil && s.RoutingTable > 0
	})
	publish(t, a, file, tag)
	start := time.Now()
	out := b.CLI("app", "install", appID)
	t.Logf("installed from the store on %s in %v: %s", b.Name, time.Since(start), strings.TrimSpace(out))
	apps, err := b.Client().Apps(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range apps {
		if app.ID == appID {
			return
		}
	}
	t.Fatalf("%s does not list %s after installing it from the store", b.Name, appID)
}

// await200 GETs path on w's grain until it answers 200.
func await200(t *testing.T, w *nodetest.Window, path string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		req, _ := http.NewRequest("GET", w.Origin+path, nil)
		resp, err := w.HTTP.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(start)
			}
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("GET %s never answered 200 (last: %v %v)", path, err, status(resp))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func status(r *http.Response) string {
	if r == nil {
		return ""
	}
	return fmt.Sprint(r.StatusCode)
}
