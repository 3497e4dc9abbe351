package ca

import (
	"context"
	"encoding/base64"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/weftmesh/weft/api"
)

// jwt returns a token shaped like a JWT whose payload has exp (unsigned: the fake review
// accepts it).
func jwt(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(fmt.Appendf(nil, `{"exp":%d,"aud":["weft-ca"]}`, exp.Unix())) + ".sig"
}

func TestTokenExpiry(t *testing.T) {
	exp := time.Unix(1900000000, 0)
	tests := []struct {
		token string
		want  time.Time
	}{
		{jwt(exp), exp},
		{"opaque-token", time.Time{}},
		{"a.!!!.c", time.Time{}},
		{"a." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + ".c", time.Time{}},
		{"a." + base64.RawURLEncoding.EncodeToString([]byte(`{"exp":"soon"}`)) + ".c", time.Time{}},
	}
	for _, tt := range tests {
		if got := tokenExpiry(tt.token); !got.Equal(tt.want) {
			t.Errorf("tokenExpiry(%q) = %v, want %v", tt.token, got, tt.want)
		}
	}
}

func TestAuthenticatorCache(t *testing.T) {
	var reviews atomic.Int32
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		reviews.Add(1)
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		if tr.Spec.Token == "bad" {
			tr.Status.Error = "invalid"
			return true, tr, nil
		}
		tr.Status = authnv1.TokenReviewStatus{Authenticated: true, Audiences: []string{api.TokenAudience},
			User: authnv1.UserInfo{Username: "system:serviceaccount:shop:waypoint"}}
		return true, tr, nil
	})
	now := time.Unix(1800000000, 0)
	shortLived := jwt(now.Add(10 * time.Second))
	tests := []struct {
		name    string
		ttl     time.Duration
		token   string
		advance time.Duration // between the two calls
		reviews int32         // TokenReviews for both calls
	}{
		{"cached", time.Minute, "opaque", 30 * time.Second, 1},
		{"cache expired", time.Minute, "opaque", 61 * time.Second, 2},
		{"cached until the token expires", time.Minute, shortLived, 5 * time.Second, 1},
		{"token expired", time.Minute, shortLived, 11 * time.Second, 2},
		{"cache disabled", -1, "opaque", 0, 2},
		{"failures not cached", time.Minute, "bad", 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reviews.Store(0)
			a, err := NewAuthenticator(AuthenticatorOptions{Client: cs, CacheTTL: tt.ttl})
			if err != nil {
				t.Fatal(err)
			}
			clock := now
			a.now = func() time.Time { return clock }
			_, err1 := a.AuthenticateToken(context.Background(), tt.token)
			clock = clock.Add(tt.advance)
			c, err2 := a.AuthenticateToken(context.Background(), tt.token)
			if (err1 == nil) != (err2 == nil) {
				t.Fatalf("first call: %v, second: %v", err1, err2)
			}
			if err2 == nil && c.String() != "shop/waypoint" {
				t.Errorf("caller %s, want shop/waypoint", c)
			}
			if got := reviews.Load(); got != tt.reviews {
				t.Errorf("%d TokenReviews, want %d", got, tt.reviews)
			}
		})
	}
}
