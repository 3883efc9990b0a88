package main

import (
	"strings"
	"testing"

	"erg"
)

// The CLI prints a line when the part worked on changes and when it is
// done, not one per chunk in between.
func TestProgressLines(t *testing.T) {
	var out strings.Builder
	show := progressLines(&out)
	g := erg.BackupProgress{What: "backup", Source: "Plans", Sources: 2, Files: 2, Bytes: 4 << 20}
	show(g)
	for i := range 100 { // chunk by chunk, well within a second
		g.BytesDone = int64(i) * (4 << 20) / 100
		show(g)
	}
	g.FilesDone, g.BytesDone = 2, 4<<20
	show(g)
	show(erg.BackupProgress{What: "backup", Source: "This node", SourcesDone: 1, Sources: 2})
	show(erg.BackupProgress{What: "restore", Source: "grain abc", Files: 1, Bytes: 1 << 20, FilesDone: 1, BytesDone: 1 << 20})
	want := []string{
		"Backing up Plans (1 of 2): 0 of 2 files, 0.0 of 4.0 MiB",
		"Backing up Plans (1 of 2): 2 of 2 files, 4.0 of 4.0 MiB",
		"Backing up This node (2 of 2)",
		"Restoring grain abc: 1 of 1 files, 1.0 of 1.0 MiB",
	}
	if got := strings.Split(strings.TrimSpace(out.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("printed:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}
}
