package systemd

import (
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// JournalStream reports whether f (stderr) is connected to the journal: systemd sets JOURNAL_STREAM to the
// device and inode of the stream it connected (systemd.exec(5)); a redirected stderr no longer matches.
func JournalStream(f *os.File) bool {
	v := os.Getenv("JOURNAL_STREAM")
	if v == "" {
		return false
	}
	var dev, ino uint64
	if _, err := fmt.Sscanf(v, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// NewJournalEncoder encodes entries for the journal's stream: one line each, prefixed with its syslog priority
// (<3> error ... <7> debug, which journald strips and keeps as PRIORITY=), with no timestamp or level of its own
// (the journal records both), and the fields as logfmt-like key=value pairs after the message.
func NewJournalEncoder() zapcore.Encoder {
	cfg := zapcore.EncoderConfig{
		MessageKey:       "msg",
		NameKey:          "logger",
		CallerKey:        "",
		StacktraceKey:    "stacktrace",
		LineEnding:       "\n",
		EncodeDuration:   zapcore.StringDurationEncoder,
		EncodeName:       zapcore.FullNameEncoder,
		ConsoleSeparator: " ",
	}
	return journalEncoder{zapcore.NewConsoleEncoder(cfg)}
}

type journalEncoder struct{ zapcore.Encoder }

func (e journalEncoder) Clone() zapcore.Encoder { return journalEncoder{e.Encoder.Clone()} }

func (e journalEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	inner, err := e.Encoder.EncodeEntry(ent, fields)
	if err != nil {
		return nil, err
	}
	defer inner.Free()
	out := bufferPool.Get()
	// Each line of a multi-line entry (a stack trace) carries the priority, or journald logs it at the default.
	prefix := fmt.Sprintf("<%d>", Priority(ent.Level))
	for line := range strings.Lines(inner.String()) {
		out.AppendString(prefix)
		out.AppendString(line)
	}
	return out, nil
}

// Priority is the syslog priority of a zap level (sd-daemon(3)).
func Priority(l zapcore.Level) int {
	switch {
	case l >= zapcore.FatalLevel:
		return 2 // crit
	case l >= zapcore.ErrorLevel:
		return 3 // err
	case l >= zapcore.WarnLevel:
		return 4 // warning
	case l >= zapcore.InfoLevel:
		return 6 // info
	default:
		return 7 // debug
	}
}

var bufferPool = buffer.NewPool()
