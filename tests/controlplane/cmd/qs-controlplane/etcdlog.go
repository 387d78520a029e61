package main

import (
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcdLogger is etcd's usual JSON logger on stderr, minus messages that are expected for an
// embedded single-member test etcd and only alarm people reading the log: the start-up
// warnings about the shared http/grpc port and simple tokens, and the
// "server closed" / "use of closed network connection" errors every listener reports when
// Close() stops it.
func etcdLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	cfg.Sampling = nil
	cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	lg, err := cfg.Build(zap.AddStacktrace(zapcore.FatalLevel))
	if err != nil {
		return nil, err
	}
	return lg.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return &quietCore{c} })), nil
}

type quietCore struct{ zapcore.Core }

func (q *quietCore) With(f []zapcore.Field) zapcore.Core { return &quietCore{q.Core.With(f)} }

func (q *quietCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if !q.Enabled(e.Level) {
		return ce
	}
	return ce.AddCore(e, q)
}

func (q *quietCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	switch {
	case strings.HasPrefix(e.Message, "Running http and grpc server on single port"),
		strings.HasPrefix(e.Message, "simple token is not cryptographically signed"):
		return nil
	}
	for _, f := range fields {
		if f.Type == zapcore.ErrorType {
			if err, ok := f.Interface.(error); ok {
				switch msg := err.Error(); {
				case strings.Contains(msg, "use of closed network connection"),
					strings.Contains(msg, "mux: server closed"),
					strings.Contains(msg, "http: Server closed"):
					return nil
				}
			}
		}
	}
	return q.Core.Write(e, fields)
}
