package browsertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TrustingHome is a home directory whose NSS database (~/.pki/nssdb,
// where Chromium on Linux looks, as on a desktop) trusts the CA
// certificate caPEM, called name, to issue server certificates: start
// Chromium with chromedp.Env("HOME="+home) for a browser that trusts it
// beside its built-in roots. It skips the test where certutil (Debian's
// libnss3-tools) is missing.
func TrustingHome(t testing.TB, name string, caPEM []byte) string {
	t.Helper()
	certutil, err := exec.LookPath("certutil")
	if err != nil {
		t.Skip("certutil is not installed (apt-get install libnss3-tools)")
	}
	home := t.TempDir()
	nssdb := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(nssdb, 0o700); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-N", "-d", "sql:" + nssdb, "--empty-password"},
		{"-A", "-d", "sql:" + nssdb, "-t", "C,,", "-n", name, "-i", caFile},
	} {
		if out, err := exec.Command(certutil, args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %v: %v\n%s", args, err, out)
		}
	}
	return home
}
