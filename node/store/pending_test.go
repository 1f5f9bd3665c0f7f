package store

import (
	"fmt"
	"log/slog"
	"testing"
)

func openBenchStore(b *testing.B) *Store {
	b.Helper()
	st, err := Open(Config{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st
}

// benchWrite returns the ops of a message-sized write (message, id index,
// dedup record) of shard 7.
func benchWrite(i int) []Op {
	k := func(fam Family, s string) []byte { return NewKey(7, "app", fam).Str("conv").Str(s).Bytes() }
	v := EncodeVersioned(uint64(i+1)<<16, false, make([]byte, 200))
	return []Op{
		{Kind: OpSet, Key: k(FamMsg, fmt.Sprint(i)), Value: v},
		{Kind: OpSet, Key: k(FamMsgID, fmt.Sprint(i)), Value: EncodeVersioned(uint64(i+1)<<16, false, []byte("12345678"))},
		{Kind: OpSet, Key: k(FamDedup, fmt.Sprint(i)), Value: EncodeVersioned(uint64(i+1)<<16, false, []byte("mid"))},
	}
}

// BenchmarkReplicatedWrite compares what one replica does per write: the
// visible write alone (before pending writes), pending then a synced
// commit, and pending then a commit that is not synced (what the
// coordinator and the commit notices do).
func BenchmarkReplicatedWrite(b *testing.B) {
	b.Run("visible-only", func(b *testing.B) {
		st := openBenchStore(b)
		for i := range b.N {
			if err := st.ApplyVersioned(benchWrite(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprintf("pending+commit-sync=%v", sync), func(b *testing.B) {
			st := openBenchStore(b)
			for i := range b.N {
				w := PendingWrite{Epoch: 1, ID: uint64(i + 1), Ops: benchWrite(i)}
				if err := st.PutPending(7, w); err != nil {
					b.Fatal(err)
				}
				commit := st.CommitWriteNoSync
				if sync {
					commit = st.CommitWrite
				}
				if err := commit(7, w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
