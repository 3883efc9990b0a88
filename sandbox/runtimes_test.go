package sandbox_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

// runtimeApps are small web apps in the languages grains are written in,
// each run by the host's own interpreter or built by the host's compiler.
// Each answers GET / with "ok" and GET /work with "<lang> ok" after it has
// written and read back a file in /var, started a child process or thread,
// and read random bytes: the calls their runtimes make under the
// allow-list filter.
var runtimeApps = []struct {
	lang, file, src string
	args            func(dir string) ([]string, error) // in the sandbox; dir is the host dir holding src
}{
	{"c", "server.c", cServer, func(dir string) ([]string, error) {
		gcc, err := exec.LookPath("gcc")
		if err != nil {
			return nil, err
		}
		out, err := exec.Command(gcc, "-O1", "-pthread", "-o", filepath.Join(dir, "server"), filepath.Join(dir, "server.c")).CombinedOutput()
		if err != nil {
			return nil, &buildError{string(out), err}
		}
		return []string{"/app/server"}, nil
	}},
	{"node", "server.js", nodeServer, func(string) ([]string, error) {
		p, err := exec.LookPath("node")
		return []string{p, "/app/server.js"}, err
	}},
	{"python", "server.py", pyServer, func(string) ([]string, error) {
		p, err := exec.LookPath("/usr/bin/python3")
		return []string{p, "/app/server.py"}, err
	}},
	{"php", "index.php", phpServer, func(string) ([]string, error) {
		p, err := exec.LookPath("php")
		return []string{p, "-S", "127.0.0.1:" + strconv.Itoa(probePort), "/app/index.php"}, err
	}},
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// TestRuntimesUnderFilter runs each runtime's app in a development
// sandbox (the host's /usr, /lib... read-only, as `erg app dev` runs
// them) with the grain's seccomp filter, and checks it serves.
func TestRuntimesUnderFilter(t *testing.T) {
	if testing.Short() {
		t.Skip("starts interpreters")
	}
	r := newRunner(t, sandbox.Config{Zygotes: -1})
	for _, app := range runtimeApps {
		t.Run(app.lang, func(t *testing.T) {
			root, err := os.MkdirTemp("", "erg-runtime-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(root) })
			dir := filepath.Join(root, "app")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			os.Chmod(root, 0o755)
			if err := os.WriteFile(filepath.Join(dir, app.file), []byte(app.src), 0o644); err != nil {
				t.Fatal(err)
			}
			args, err := app.args(dir)
			if _, ok := err.(*buildError); ok {
				t.Fatal(err)
			}
			if err != nil {
				if app.lang == "php" {
					t.Skip("no php on this machine")
				}
				t.Fatalf("%s is needed (CI installs it): %v", app.lang, err)
			}
			var hostRO []string
			for _, d := range []string{"/usr", "/lib", "/lib64", "/bin", "/etc"} {
				if _, err := os.Lstat(d); err == nil {
					hostRO = append(hostRO, d)
				}
			}
			spec := sandbox.Spec{
				Name: "rt-" + app.lang, Root: root, Var: sandboxtest.VarDir(t), Args: args,
				Env:    []string{"PORT=" + strconv.Itoa(probePort), "HOME=/var", "PATH=/usr/bin:/bin"},
				Limits: sandbox.Limits{MemoryBytes: 512 << 20, Pids: 256, NoFile: 1024, TmpBytes: 16 << 20},
				Stderr: testWriter{t}, Stdout: testWriter{t}, HostRO: hostRO,
			}
			sb := start(t, r, spec)
			waitReady(t, sb)
			if got := mustGet(t, sb, "/work"); strings.TrimSpace(got) != app.lang+" ok" {
				t.Errorf("GET /work = %q, want %q", got, app.lang+" ok")
			}
		})
	}
}

const cServer = `#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>

static int work(void) {
	char buf[16], rnd[8];
	int fd = open("/var/c-file", O_CREAT | O_RDWR | O_TRUNC, 0600);
	if (fd < 0 || write(fd, "data", 4) != 4 || pread(fd, buf, 4, 0) != 4) return 0;
	close(fd);
	if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) return 0;
	pid_t pid = fork();
	if (pid == 0) _exit(7);
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || WEXITSTATUS(st) != 7) return 0;
	return memcmp(buf, "data", 4) == 0;
}

static void *serve(void *arg) {
	int c = (int)(long)arg;
	char req[1024];
	ssize_t n = read(c, req, sizeof req - 1);
	if (n > 0) {
		req[n] = 0;
		const char *body = strncmp(req, "GET /work", 9) == 0 ? (work() ? "c ok" : "c failed") : "ok";
		char resp[256];
		int m = snprintf(resp, sizeof resp, "HTTP/1.0 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
		write(c, resp, m);
	}
	close(c);
	return NULL;
}

int main(void) {
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(getenv("PORT")))};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16)) { perror("listen"); return 1; }
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0) continue;
		pthread_t t; /* a thread per request: glibc's pthread_create tries clone3 first */
		if (pthread_create(&t, NULL, serve, (void *)(long)c) == 0) pthread_detach(t); else close(c);
	}
}
`

const nodeServer = `const http = require('http'), fs = require('fs'), cp = require('child_process'), crypto = require('crypto');
http.createServer((req, res) => {
  if (req.url !== '/work') { res.end('ok'); return; }
  fs.writeFileSync('/var/node-file', 'data');
  const ok = fs.readFileSync('/var/node-file', 'utf8') === 'data' && crypto.randomBytes(8).length === 8;
  cp.execFile(process.execPath, ['-e', 'process.exit(7)'], (err) => {
    res.end(ok && err && err.code === 7 ? 'node ok' : 'node failed');
  });
}).listen(+process.env.PORT, '127.0.0.1');
`

const pyServer = `import http.server, os, subprocess, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'ok'
        if self.path == '/work':
            with open('/var/py-file', 'w') as f: f.write('data')
            ok = open('/var/py-file').read() == 'data' and len(os.urandom(8)) == 8
            ok = ok and subprocess.run(['/usr/bin/python3', '-c', 'raise SystemExit(7)']).returncode == 7
            body = b'python ok' if ok else b'python failed'
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
`

const phpServer = `<?php
if ($_SERVER['REQUEST_URI'] !== '/work') { echo 'ok'; return; }
file_put_contents('/var/php-file', 'data');
$ok = file_get_contents('/var/php-file') === 'data' && strlen(random_bytes(8)) === 8;
exec('php -r "exit(7);"', $out, $code);
echo ($ok && $code === 7) ? 'php ok' : 'php failed';
`
