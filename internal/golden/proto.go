package golden

import (
	"bytes"
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Validate fails the test for every message whose generated ValidateAll() refuses it (the
// promise of the translations: nothing invalid is served).
func Validate[M interface{ ValidateAll() error }](t *testing.T, msgs ...M) {
	t.Helper()
	for _, m := range msgs {
		if err := m.ValidateAll(); err != nil {
			t.Errorf("invalid resource: %v", err)
		}
	}
}

// Proto renders m as JSON for a golden file ("null" for a nil message).
func Proto[M proto.Message](t *testing.T, m M) json.RawMessage {
	t.Helper()
	if !m.ProtoReflect().IsValid() {
		return []byte("null")
	}
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Protos renders every message of ms with Proto.
func Protos[M proto.Message](t *testing.T, ms []M) []json.RawMessage {
	t.Helper()
	out := []json.RawMessage{}
	for _, m := range ms {
		out = append(out, Proto(t, m))
	}
	return out
}

// JSON renders v as indented JSON with a final newline; protojson's output inside is
// normalised by encoding/json, so the file is stable.
func JSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}
