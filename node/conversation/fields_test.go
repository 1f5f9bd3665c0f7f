package conversation

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/imcluster/imcluster/node/store"
)

func fullRecord() *convRecord {
	return &convRecord{
		ID: "c1", Creator: "tom", Members: []string{"jerry", "tom"}, Muted: []string{"jerry"}, Kind: convTemporary,
		Unique: true, UniqueID: "u1", Created: 1_700_000_000_000, Updated: 1_700_000_000_001, TTL: 3600,
		Expire: 1_700_003_600_000, LastPatch: -5, Silenced: []string{"spike"}, Blocked: []string{"a/b", "x"},
		Columns: map[string]any{"name": "n", "attr": map[string]any{"k": []any{1.5, "v", true, nil}}},
		Roles:   map[string]string{"jerry": roleManager},
	}
}

func TestConversationFieldsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		r    *convRecord
	}{
		{"full", fullRecord()},
		{"minimal", &convRecord{ID: "c2", Kind: convNormal}},
		{"empty", &convRecord{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := store.EncodeFields(tt.r.fields())
			got, err := decodeConv(v)
			if err != nil {
				t.Fatal(err)
			}
			// A stored record has its order index entries (order.go).
			tt.r.orderIndexed, tt.r.indexedUpdated = true, tt.r.Updated
			if !reflect.DeepEqual(got, tt.r) {
				t.Fatalf("decoded %+v, want %+v", got, tt.r)
			}
			// A record stored as JSON before conversations were field docs.
			j, err := json.Marshal(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if got, err = decodeConv(j); err != nil || !reflect.DeepEqual(got, tt.r) {
				t.Fatalf("decoded JSON %+v, %v; want %+v", got, err, tt.r)
			}
		})
	}
	s := clientState{ReadTs: 5, ReadAt: 6, AckTs: -1, Changed: 9}
	got, err := decodeClientState(store.EncodeFields(s.fields()))
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("client state %+v, %v; want %+v", got, err, s)
	}
	for _, bad := range [][]byte{{0xF1, 1, 'k', 0, 0}, {'{'}, nil} {
		if _, err := decodeConv(bad); err == nil {
			t.Fatalf("decodeConv(%x) accepted", bad)
		}
	}
}

func TestConversationChangedFields(t *testing.T) {
	r := fullRecord()
	stored := store.EncodeFields(r.fields())
	r.stored = stored
	if got := changedFields(r.stored, r.fields(), isConvField); len(got) != 0 {
		t.Fatalf("unchanged record writes %+v", got)
	}
	r.Members = setRemove(r.Members, "jerry")
	r.Members = setAdd(r.Members, "spike")
	r.Columns["name"] = "renamed"
	delete(r.Roles, "jerry")
	r.Updated++
	got := changedFields(r.stored, r.fields(), isConvField)
	want := []store.Field{
		{Name: prefixColumn + "name", Value: []byte(`"renamed"`)},
		{Name: prefixMember + "jerry", Deleted: true},
		{Name: prefixMember + "spike"},
		{Name: prefixRole + "jerry", Deleted: true},
		{Name: fieldUpdated, Value: r.fields()[slices.IndexFunc(r.fields(), func(f store.Field) bool { return f.Name == fieldUpdated })].Value},
	}
	if !slices.EqualFunc(got, want, func(a, b store.Field) bool {
		return a.Name == b.Name && string(a.Value) == string(b.Value) && a.Deleted == b.Deleted
	}) {
		t.Fatalf("changed fields %+v, want %+v", got, want)
	}
	// A field of a newer version is left alone.
	withUnknown := store.EncodeFields(append(fullRecord().fields(), store.Field{Name: "zz/new", Value: []byte("x")}))
	if got := changedFields(withUnknown, fullRecord().fields(), isConvField); len(got) != 0 {
		t.Fatalf("unknown field rewritten: %+v", got)
	}
}

// TestConversationConcurrentUpdatesKeepBoth: two updates made from the same
// loaded record (as two coordinators may while coordination moves) both
// survive, because each writes only the fields it changed.
func TestConversationConcurrentUpdatesKeepBoth(t *testing.T) {
	h := newHarness(t)
	tom := h.caller("tom", 1)
	cid := h.start(tom, "jerry")
	a, err := h.e.loadConv(testApp, cid)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.e.loadConv(testApp, cid)
	if err != nil {
		t.Fatal(err)
	}
	a.Members = setAdd(a.Members, "spike")
	b.Columns["name"] = "renamed"
	b.Members = setRemove(b.Members, "jerry")
	for _, r := range []*convRecord{a, b} {
		batch := h.e.st.NewBatch()
		h.e.putConv(batch, testApp, r)
		if err := h.e.st.Commit(batch); err != nil {
			t.Fatal(err)
		}
	}
	got, err := h.e.loadConv(testApp, cid)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"spike", "tom"}; !slices.Equal(got.Members, want) || got.Columns["name"] != "renamed" {
		t.Fatalf("members %v, name %v; want %v and renamed", got.Members, got.Columns["name"], want)
	}

	// The same for a client state: the read and the delivery pointer.
	s1, err := h.e.loadClientState(testApp, "jerry", cid)
	if err != nil {
		t.Fatal(err)
	}
	s2 := s1
	s1.ReadTs, s2.AckTs = 100, 200
	for _, s := range []clientState{s1, s2} {
		batch := h.e.st.NewBatch()
		h.e.putClientState(batch, testApp, "jerry", cid, s)
		if err := h.e.st.Commit(batch); err != nil {
			t.Fatal(err)
		}
	}
	s, err := h.e.loadClientState(testApp, "jerry", cid)
	if err != nil || s.ReadTs != 100 || s.AckTs != 200 {
		t.Fatalf("client state %+v, %v; want both pointers", s, err)
	}
}

func BenchmarkConversationDecode(b *testing.B) {
	r := fullRecord()
	for i := range 200 {
		r.Members = setAdd(r.Members, "member-"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	// fields is the stored layout; json the layout before it, for
	// comparison.
	j, _ := json.Marshal(r)
	for _, bc := range []struct {
		name string
		v    []byte
	}{{"fields", store.EncodeFields(r.fields())}, {"json", j}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.v)))
			for b.Loop() {
				if _, err := decodeConv(bc.v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
