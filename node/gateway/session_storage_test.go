package gateway

import "testing"

// TestOneValue checks the one-pair session storage against gws's contract:
// a key not stored is not found, Delete removes only its own key, Range
// visits the pair.
func TestOneValue(t *testing.T) {
	s := newOneValue()
	if _, ok := s.Load(sessionKeyConn); ok || s.Len() != 0 {
		t.Fatal("an empty storage holds a value")
	}
	c := &conn{}
	s.Store(sessionKeyConn, c)
	if v, ok := s.Load(sessionKeyConn); !ok || v != c || s.Len() != 1 {
		t.Fatalf("Load after Store = %v, %v", v, ok)
	}
	if _, ok := s.Load("other"); ok {
		t.Fatal("another key is found")
	}
	s.Delete("other")
	if _, ok := s.Load(sessionKeyConn); !ok {
		t.Fatal("deleting another key removed the pair")
	}
	n := 0
	s.Range(func(k string, v any) bool {
		n++
		if k != sessionKeyConn || v != c {
			t.Fatalf("Range visits %q %v", k, v)
		}
		return true
	})
	if n != 1 {
		t.Fatalf("Range visited %d pairs", n)
	}
	s.Delete(sessionKeyConn)
	if _, ok := s.Load(sessionKeyConn); ok || s.Len() != 0 {
		t.Fatal("the pair survived its Delete")
	}
}
