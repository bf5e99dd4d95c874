package reader

import "unsafe"

func unsafeBytes(words []uint64) []byte {
	if len(words) == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
}
