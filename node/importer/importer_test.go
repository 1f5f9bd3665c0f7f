package importer

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// A _Conversation export is read whichever framing the file has.
func TestReadExportFramings(t *testing.T) {
	dir := t.TempDir()
	a := `{"objectId":"5eccba570d3a42c5fd4e25c3","m":["a","b"]}`
	b := `{"objectId":"5ece0a11e3b1a70006a1b2d9","tr":true}`
	c := `{"objectId":"5ece0b22e3b1a70006a1b2e0","sys":true}`
	for name, body := range map[string]string{
		"array":   "[" + a + "," + b + "," + c + "]",
		"results": `{"results":[` + a + "," + b + "," + c + "]}",
		"lines":   a + "\n\n" + b + "\r\n" + c,
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		recs, err := readExport(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(recs) != 3 || recs[0].id != "5eccba570d3a42c5fd4e25c3" || !slices.Equal(recs[0].members, []string{"a", "b"}) ||
			!recs[1].room || !recs[2].system {
			t.Fatalf("%s: %+v", name, recs)
		}
	}
	for name, body := range map[string]string{"no id": `[{"name":"x"}]`, "not json": "{oops\n", "bad line": a + "\n{"} {
		path := filepath.Join(dir, "bad")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readExport(path); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The checkpoint survives a torn last line: finished conversations stay
// finished, the torn record is ignored, and new records start on a line of
// their own.
func TestCheckpointTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ck")
	if err := os.WriteFile(path, []byte("page c1 100 m1\ndone c1\npage c2 200 m2\npage c2 30"), 0o600); err != nil {
		t.Fatal(err)
	}
	ck, err := openCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	if !ck.isDone("c1") || ck.isDone("c2") || ck.cursor("c1") != (message{}) || ck.cursor("c2") != (message{ID: "m2", Timestamp: 200}) {
		t.Fatalf("after reopening: done c1 %v, c2 %v, cursor c2 %+v", ck.isDone("c1"), ck.isDone("c2"), ck.cursor("c2"))
	}
	if err := ck.page("c2", message{ID: "m3", Timestamp: 300}); err != nil {
		t.Fatal(err)
	}
	if err := ck.done("c2"); err != nil {
		t.Fatal(err)
	}
	ck.close()
	again, err := openCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	defer again.close()
	if !again.isDone("c1") || !again.isDone("c2") {
		t.Fatal("a record written after the torn line was lost")
	}
}
