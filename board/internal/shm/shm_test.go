package shm

import (
	"bytes"
	"testing"
	"unsafe"
)

// EqualOut (the Reader's comparison off amd64) agrees with bytes.Equal, a difference in any byte of any word.
func TestEqualOut(t *testing.T) {
	words := make([]uint64, 64) // 8-byte aligned, as a mapping is
	m := Mem(unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8))
	for i := range m {
		m[i] = byte(i * 7)
	}
	for _, off := range []uint64{0, 8, 64} {
		b := bytes.Clone(m[off : off+256])
		if !m.EqualOut(b, off) {
			t.Fatalf("off %d: equal bytes reported different", off)
		}
		for i := range b {
			b[i]++
			if m.EqualOut(b, off) {
				t.Fatalf("off %d: byte %d differs, reported equal", off, i)
			}
			b[i]--
		}
	}
}
