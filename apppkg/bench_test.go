package apppkg

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// BenchmarkPackInstall packs and installs (open, verify, unpack) a 100 MB
// app tree, beside a plain `tar` of the same tree in the same run (each
// output synced to disk, as packing and installing do), and
// reports the peak Go heap while installing, to show installing streams.
func BenchmarkPackInstall(b *testing.B) {
	const total = 100 << 20
	tar, err := exec.LookPath("tar")
	if err != nil {
		b.Skip("no tar for the baseline")
	}
	key, _ := GenerateKey()
	dir := b.TempDir()
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	// A few big files and many small ones, like a real app with assets.
	sizes := []int{40 << 20, 30 << 20, 20 << 20}
	for i := range 500 {
		sizes = append(sizes, (total-90<<20)/500+i%7)
	}
	for i, sz := range sizes {
		buf := make([]byte, sz)
		rand.Read(buf)
		if err := os.WriteFile(filepath.Join(dir, "data", fmt.Sprintf("f%03d", i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	manifest := fmt.Sprintf(`{"id":%q,"name":"Big","version":1,"command":["/data/f000"],"port":8000,
		"roles":[{"name":"viewer","permissions":["read"]}],"ownerRole":"viewer"}`, AppID(key.Public().(ed25519.PublicKey)))
	os.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifest), 0o644)
	mb := float64(total) / (1 << 20)

	var tarT, untarT, packT, installT time.Duration
	var peak uint64
	for i := range b.N {
		out := b.TempDir()
		t0 := time.Now()
		if msg, err := exec.Command(tar, "-cf", filepath.Join(out, "tree.tar"), "-C", dir, ".").CombinedOutput(); err != nil {
			b.Fatalf("tar: %v %s", err, msg)
		}
		// Like the package below, the archive counts once it is on disk.
		if err := syncFile(filepath.Join(out, "tree.tar")); err != nil {
			b.Fatal(err)
		}
		tarT += time.Since(t0)

		// Extracting the archive is the baseline for installing: both
		// create every file, and creating files is costly on some file
		// systems whatever writes them.
		x := filepath.Join(out, "untar")
		os.Mkdir(x, 0o755)
		t0 = time.Now()
		if msg, err := exec.Command(tar, "-xf", filepath.Join(out, "tree.tar"), "-C", x).CombinedOutput(); err != nil {
			b.Fatalf("tar -x: %v %s", err, msg)
		}
		if err := syncFS(x); err != nil {
			b.Fatal(err)
		}
		untarT += time.Since(t0)
		os.RemoveAll(x)

		pkgPath := filepath.Join(out, "big.erg")
		f, err := os.Create(pkgPath)
		if err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		if _, err := Pack(context.Background(), dir, key, f, PackOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		packT += time.Since(t0)

		runtime.GC()
		stop := sampleHeap(&peak)
		t0 = time.Now()
		pkg, err := OpenFile(context.Background(), pkgPath, SizeLimits{})
		if err != nil {
			b.Fatal(err)
		}
		if err := Unpack(context.Background(), pkg, filepath.Join(out, fmt.Sprintf("tree%d", i)), UnpackOptions{}); err != nil {
			b.Fatal(err)
		}
		installT += time.Since(t0)
		pkg.Close()
		stop()
		RemoveTree(filepath.Join(out, fmt.Sprintf("tree%d", i)))
	}
	n := float64(b.N)
	b.ReportMetric(mb*n/tarT.Seconds(), "tar-MB/s")
	b.ReportMetric(mb*n/packT.Seconds(), "pack-MB/s")
	b.ReportMetric(mb*n/installT.Seconds(), "install-MB/s")
	b.ReportMetric(packT.Seconds()/tarT.Seconds(), "pack/tar-time")
	b.ReportMetric(installT.Seconds()/packT.Seconds(), "install/pack-time")
	b.ReportMetric(mb*n/untarT.Seconds(), "untar-MB/s")
	b.ReportMetric(installT.Seconds()/untarT.Seconds(), "install/untar-time")
	b.ReportMetric(float64(peak)/(1<<20), "install-peak-heap-MiB")
}

func syncFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// sampleHeap records the peak in-use heap until the returned stop is called.
func sampleHeap(peak *uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > *peak {
				*peak = ms.HeapInuse
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
