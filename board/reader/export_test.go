package reader

// SlotBytes is the mapped slot of version v, for benchmarks that measure a limit on the same bytes.
func (b *Board) SlotBytes(v uint64) []byte {
	off := b.hdr.SlotOffset(v)
	return b.mem[off : off+uint64(b.hdr.SlotSize)]
}
