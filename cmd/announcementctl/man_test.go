package main

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The manual pages' sources (docs/man/*.md, `make man`) are checked against the binaries, so that they cannot
// drift: announcementd(8)'s OPTIONS names every flag `announcementd -h` lists and no other; announcementctl(1)'s
// GLOBAL OPTIONS names every global flag, and its COMMANDS has an entry for every command `announcementctl -h`
// lists, which names every flag the command's -h lists and no other.

const manDir = "../../docs/man"

var (
	// A flag as PrintDefaults lists it ("  -shm string") and as our help lists it ("  --shm PATH").
	defaultsFlag = regexp.MustCompile(`(?m)^  --?([a-z][a-z-]*)`)
	// A flag as a man page's source writes it: **--shm**.
	manFlag = regexp.MustCompile(`\*\*--?([a-z][a-z-]*)\*\*`)
)

// manSection is the text of one "# NAME" section of a man page's source.
func manSection(t *testing.T, page, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(manDir, page))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "\n# "+name+"\n")
	if !ok {
		t.Fatalf("%s has no # %s section", page, name)
	}
	body, _, _ := strings.Cut(after, "\n# ")
	return body
}

// manEntries splits a section of definitions into its entries: each begins with a term line, "**...", and runs to
// the next term line. It returns them by the term's first word (without asterisks and dashes).
func manEntries(section string) map[string]string {
	entries := map[string]string{}
	var key string
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "**") {
			first, _, _ := strings.Cut(line[2:], "**")
			key = strings.TrimLeft(first, "-")
			entries[key] = ""
		}
		if key != "" {
			entries[key] += line + "\n"
		}
	}
	return entries
}

// termFlags are the flags a definition's term line names.
func termFlags(entry string) []string {
	term, _, _ := strings.Cut(entry, "\n")
	var flags []string
	for _, m := range manFlag.FindAllStringSubmatch(term, -1) {
		flags = append(flags, m[1])
	}
	return flags
}

func set(list []string) map[string]bool {
	m := map[string]bool{}
	for _, s := range list {
		m[s] = true
	}
	return m
}

func matches(re *regexp.Regexp, s string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestManPageOfTheDaemon(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "announcementd")
	if out, err := exec.Command("go", "build", "-o", bin, "../announcementd").CombinedOutput(); err != nil {
		t.Fatalf("go build announcementd: %v\n%s", err, out)
	}
	help, err := exec.Command(bin, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("announcementd -h: %v\n%s", err, help)
	}
	_, flagsPart, ok := strings.Cut(string(help), "\nFlags:\n")
	if !ok {
		t.Fatalf("announcementd -h has no Flags: section:\n%s", help)
	}
	flags := set(matches(defaultsFlag, flagsPart))
	if len(flags) < 10 {
		t.Fatalf("only %d flags in announcementd -h:\n%s", len(flags), help)
	}
	flags["h"], flags["help"] = true, true

	documented := map[string]bool{}
	for key, entry := range manEntries(manSection(t, "announcementd.8.md", "OPTIONS")) {
		for _, f := range termFlags(entry) {
			documented[f] = true
			if !flags[f] {
				t.Errorf("announcementd.8.md documents --%s (entry %q), which announcementd -h does not list", f, key)
			}
		}
	}
	for _, f := range slices.Sorted(maps.Keys(flags)) {
		if !documented[f] {
			t.Errorf("announcementd.8.md OPTIONS has no entry for --%s", f)
		}
	}
	// The environment variables the usage names are in ENVIRONMENT.
	env := manSection(t, "announcementd.8.md", "ENVIRONMENT")
	for _, v := range []string{"STATE_DIRECTORY", "RUNTIME_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS", "JOURNAL_STREAM"} {
		if strings.Contains(string(help), v) && !strings.Contains(env, "**"+v+"**") {
			t.Errorf("announcementd.8.md ENVIRONMENT does not describe %s", v)
		}
	}
}

func TestManPageOfTheCLI(t *testing.T) {
	code, top, _ := ctl("-h")
	if code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	// The global flags, as -h lists them.
	_, globalPart, _ := strings.Cut(top, "\nglobal flags")
	globalPart, _, _ = strings.Cut(globalPart, "\n\n")
	global := set(append(matches(defaultsFlag, globalPart), "h", "help"))
	documented := map[string]bool{}
	for _, entry := range manEntries(manSection(t, "announcementctl.1.md", "GLOBAL OPTIONS")) {
		for _, f := range termFlags(entry) {
			documented[f] = true
		}
	}
	if !maps.Equal(global, documented) {
		t.Errorf("announcementctl.1.md GLOBAL OPTIONS names %v; announcementctl -h lists %v",
			slices.Sorted(maps.Keys(documented)), slices.Sorted(maps.Keys(global)))
	}

	// The commands, as -h lists them, and each one's flags, as its -h lists them.
	_, cmdPart, _ := strings.Cut(top, "\ncommands:\n")
	cmdPart, _, _ = strings.Cut(cmdPart, "\n\n")
	names := matches(regexp.MustCompile(`(?m)^  ([a-z]+)  `), cmdPart)
	if len(names) != len(commands) {
		t.Fatalf("announcementctl -h lists %v", names)
	}
	entries := manEntries(manSection(t, "announcementctl.1.md", "COMMANDS"))
	for _, name := range names {
		entry, ok := entries[name]
		if !ok {
			t.Errorf("announcementctl.1.md COMMANDS has no entry for %s", name)
			continue
		}
		_, help, _ := ctl(name, "-h")
		_, flagsPart, _ := strings.Cut(help, "\nflags:\n")
		flagsPart, _, _ = strings.Cut(flagsPart, "\n\n")
		flags := set(matches(defaultsFlag, flagsPart))
		for f := range flags {
			if !strings.Contains(entry, "**--"+f+"**") {
				t.Errorf("announcementctl.1.md: the entry for %s does not name --%s:\n%s", name, f, entry)
			}
		}
		if got := set(termFlags(entry)); !maps.Equal(got, flags) {
			t.Errorf("announcementctl.1.md: the entry for %s shows %v; %s -h lists %v", name,
				slices.Sorted(maps.Keys(got)), name, slices.Sorted(maps.Keys(flags)))
		}
	}
	for name := range entries {
		if lookup(name) == nil {
			t.Errorf("announcementctl.1.md COMMANDS has an entry for %s, which is not a command", name)
		}
	}
	env := manSection(t, "announcementctl.1.md", "ENVIRONMENT")
	if !strings.Contains(env, "**ANNOUNCEMENTD_RUNTIME_DIR**") {
		t.Error("announcementctl.1.md ENVIRONMENT does not describe ANNOUNCEMENTD_RUNTIME_DIR")
	}
}

// TestManPagesRender converts the sources as `make man` does and renders them with man(1) and groff(1), where
// installed, asking for every warning: a page that warns fails.
func TestManPagesRender(t *testing.T) {
	out := t.TempDir()
	var pages []string
	for _, src := range []string{"announcementd.8.md", "announcementctl.1.md"} {
		page := filepath.Join(out, strings.TrimSuffix(src, ".md"))
		cmd := exec.Command("go", "tool", "go-md2man", "-in", filepath.Join(manDir, src), "-out", page)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Fatalf("go tool go-md2man %s: %v\n%s", src, err, stderr.String())
		}
		pages = append(pages, page)
	}
	renderers := 0
	if _, err := exec.LookPath("man"); err == nil {
		renderers++
		for _, page := range pages {
			cmd := exec.Command("man", "--warnings", "-l", page)
			cmd.Env = append(os.Environ(), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=80", "LANG=C.UTF-8")
			checkRender(t, cmd, page)
		}
	}
	if _, err := exec.LookPath("groff"); err == nil {
		renderers++
		for _, page := range pages {
			checkRender(t, exec.Command("groff", "-t", "-man", "-Tutf8", "-ww", "-z", page), page)
		}
	}
	if renderers == 0 {
		t.Skip("neither man nor groff is installed (apt-get install man-db groff-base): the pages were converted, not rendered")
	}
}

func checkRender(t *testing.T, cmd *exec.Cmd, page string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("%s %s: %v\n%s", cmd.Args[0], filepath.Base(page), err, stderr.String())
	}
	if cmd.Args[0] == "man" && !strings.Contains(stdout.String(), "NAME") {
		t.Errorf("man -l %s rendered no NAME:\n%s", filepath.Base(page), stdout.String())
	}
}
