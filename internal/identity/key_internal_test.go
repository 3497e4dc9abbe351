package identity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestPrivateKeyIsNeverPrinted(t *testing.T) {
	key, err := newPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := key.k.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	secret := new(big.Int).SetBytes(raw)
	svid := &x509svid.SVID{PrivateKey: key}

	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("svid", "key", key, "svid", svid)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("svid", "key", key, "svid", svid)
	j, err := json.Marshal(svid)
	if err != nil {
		t.Fatal(err)
	}
	outputs := []string{text.String(), js.String(), string(j)}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		outputs = append(outputs, fmt.Sprintf(verb, key), fmt.Sprintf(verb, svid), fmt.Sprintf(verb, *svid))
	}
	for _, out := range outputs {
		for _, leak := range []string{secret.String(), fmt.Sprintf("%x", raw), fmt.Sprintf("%X", raw), fmt.Sprint(raw)} {
			if strings.Contains(out, leak) {
				t.Fatalf("output reveals the private key: %s", out)
			}
		}
	}
}
