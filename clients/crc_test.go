package clients_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// crcMaxLen and crcAligns: the C CRCs are checked for every length 0..crcMaxLen at every alignment 0..15 (the
// table has 20 alignments so that a record's CRC, which starts 4 bytes in, has its expectation too).
const (
	crcMaxLen = 4096
	crcAligns = 20
)

// writeCRCFile writes notice_crccheck's CRCFILE: L, A, A+L random bytes, and hash/crc32's CRC-32/IEEE of
// data[a:a+n] for every a < A, n <= L.
func writeCRCFile(t *testing.T, path string, rng *rand.Rand) {
	t.Helper()
	data := make([]byte, crcAligns+crcMaxLen)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, [2]uint32{crcMaxLen, crcAligns})
	buf.Write(data)
	for a := 0; a < crcAligns; a++ {
		for n := 0; n <= crcMaxLen; n++ {
			binary.Write(&buf, binary.LittleEndian, crc32.ChecksumIEEE(data[a:a+n]))
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// utf8Cases returns inputs for the UTF-8 validator: the edge cases of strict UTF-8 (overlongs, surrogates, code
// points above U+10FFFF, truncated and stray continuation bytes, the boundaries of each length), each alone and
// behind ASCII runs of every length up to 40 (so it falls at every position of the 8- and 32-byte fast paths),
// plus random text and random bytes.
func utf8Cases(rng *rand.Rand) [][]byte {
	edges := [][]byte{
		{}, {0}, {0x7f}, {0x80}, {0xbf}, {0xc0, 0x80}, {0xc1, 0xbf}, {0xc2, 0x80}, {0xdf, 0xbf}, {0xc2}, {0xdf},
		{0xe0, 0x80, 0x80}, {0xe0, 0x9f, 0xbf}, {0xe0, 0xa0, 0x80}, {0xef, 0xbf, 0xbf}, {0xe1, 0x80}, {0xe1},
		{0xed, 0x9f, 0xbf}, {0xed, 0xa0, 0x80}, {0xed, 0xbf, 0xbf}, {0xee, 0x80, 0x80}, {0xe1, 0xc0, 0x80},
		{0xe1, 0x80, 0xc0}, {0xf0, 0x80, 0x80, 0x80}, {0xf0, 0x8f, 0xbf, 0xbf}, {0xf0, 0x90, 0x80, 0x80},
		{0xf4, 0x8f, 0xbf, 0xbf}, {0xf4, 0x90, 0x80, 0x80}, {0xf5, 0x80, 0x80, 0x80}, {0xf7, 0xbf, 0xbf, 0xbf},
		{0xf8, 0x88, 0x80, 0x80, 0x80}, {0xfe}, {0xff}, {0xf1, 0x80, 0x80}, {0xf1, 0x80}, {0xf1},
		{0xf1, 0x80, 0x80, 0x7f}, {0xf3, 0xbf, 0xbf, 0xbf}, []byte("é公告"), []byte("\U0010FFFF"),
		[]byte("\uFFFD"), []byte("a\xffb"),
	}
	var cases [][]byte
	for _, e := range edges {
		for pre := 0; pre <= 40; pre++ {
			c := append(bytes.Repeat([]byte("x"), pre), e...)
			cases = append(cases, c, append(append([]byte(nil), c...), "tail, and more ASCII after it"...))
		}
	}
	runes := []rune{'a', 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff, '公', 'é'}
	for i := 0; i < 20000; i++ {
		var b []byte
		n := rng.IntN(300)
		for len(b) < n {
			if rng.IntN(3) == 0 {
				b = utf8.AppendRune(b, runes[rng.IntN(len(runes))])
			} else {
				b = utf8.AppendRune(b, rune(rng.IntN(0x110000)))
			}
		}
		switch rng.IntN(4) {
		case 0: // valid as it is
		case 1: // cut anywhere: often a truncated sequence
			b = b[:rng.IntN(len(b)+1)]
		case 2: // one byte replaced by a random one
			if len(b) > 0 {
				b[rng.IntN(len(b))] = byte(rng.Uint32())
			}
		case 3: // random bytes
			b = make([]byte, rng.IntN(64))
			for j := range b {
				b[j] = byte(rng.Uint32()) | byte(rng.IntN(2)<<7)
			}
		}
		cases = append(cases, b)
	}
	return cases
}

// TestCRCAndUTF8 checks every CRC-32 implementation in notice.h that this CPU runs (slicing-by-8, the portable
// fallback, always; PCLMULQDQ on x86-64 or the ARMv8 CRC32 instructions on arm64) against hash/crc32 for every
// length 0..4096 at every alignment 0..15, whole, split in two calls, and as a record CRC; the slot pass of a
// snapshot for strides that are and are not multiples of 16; and the UTF-8 validation against utf8.Valid. It runs
// the plain build and the AddressSanitizer build (which catches a read past the end of any input).
func TestCRCAndUTF8(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(12, 6))
	crcFile, utf8File := filepath.Join(dir, "crc"), filepath.Join(dir, "utf8")
	writeCRCFile(t, crcFile, rng)
	cases := utf8Cases(rng)
	var buf bytes.Buffer
	valid := 0
	for _, c := range cases {
		binary.Write(&buf, binary.LittleEndian, uint32(len(c)))
		v := utf8.Valid(c)
		if v {
			valid++
		}
		buf.WriteByte(map[bool]byte{false: 0, true: 1}[v])
		buf.Write(c)
	}
	if err := os.WriteFile(utf8File, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if valid < len(cases)/5 || valid > len(cases)*4/5 {
		t.Fatalf("the UTF-8 cases are lopsided: %d of %d valid", valid, len(cases))
	}
	for _, bin := range []string{"notice_crccheck", "notice_crccheck_asan"} {
		t.Run(bin, func(t *testing.T) {
			cmd := exec.Command(filepath.Join("c", bin), crcFile, utf8File)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if err != nil {
				t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", bin, err, stdout.String(), stderr.String())
			}
			var res struct {
				Impls          []string `json:"crc_impls"`
				Default        string   `json:"crc_default"`
				CRCChecks      int      `json:"crc_checks"`
				RecordChecks   int      `json:"record_checks"`
				SlotChecks     int      `json:"slot_checks"`
				CRCMismatches  int      `json:"crc_mismatches"`
				UTF8Checks     int      `json:"utf8_checks"`
				UTF8Valid      int      `json:"utf8_valid"`
				UTF8Mismatches int      `json:"utf8_mismatches"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
			}
			perImpl := 2 * 16 * (crcMaxLen + 1)
			if res.CRCMismatches != 0 || res.UTF8Mismatches != 0 || len(res.Impls) == 0 || res.Impls[0] != "slicing-by-8" ||
				res.CRCChecks != perImpl*len(res.Impls) || res.RecordChecks == 0 || res.SlotChecks == 0 ||
				res.UTF8Checks != len(cases) || res.UTF8Valid != valid {
				t.Fatalf("%+v\nstderr: %s", res, stderr.String())
			}
			t.Logf("%s: CRC implementations %v (default %s): %d CRCs, %d record CRCs, %d slot passes; %d UTF-8 inputs (%d valid): all agree with Go",
				bin, res.Impls, res.Default, res.CRCChecks, res.RecordChecks, res.SlotChecks, res.UTF8Checks, res.UTF8Valid)
		})
	}
}

// TestCPortableCRCGolden: the C reader's snapshot with its portable CRC (NOTICE_CRC=portable: slicing-by-8) dumps
// every golden region exactly as with the CRC it picks for this CPU (TestGoldenAllReaders checks the latter
// against the .json): both paths of the snapshot are the same function.
func TestCPortableCRCGolden(t *testing.T) {
	regions, _ := filepath.Glob("../testdata/regions/*.region")
	if len(regions) < 10 {
		t.Fatalf("only %d golden regions found", len(regions))
	}
	dump, err := filepath.Abs("c/notice_dump")
	if err != nil {
		t.Fatal(err)
	}
	tool := dumpTool{"c", []string{dump}}
	for _, region := range regions {
		name := strings.TrimSuffix(filepath.Base(region), ".region")
		t.Run(name, func(t *testing.T) {
			code1, fast, _ := runDump(t, tool, region)
			code2, portable, _ := runDump(t, tool, region, "NOTICE_CRC=portable")
			f, _ := json.Marshal(fast)
			p, _ := json.Marshal(portable)
			if code1 != code2 || !bytes.Equal(f, p) {
				t.Fatalf("default CRC: exit %d %s\nNOTICE_CRC=portable: exit %d %s", code1, f, code2, p)
			}
		})
	}
}
