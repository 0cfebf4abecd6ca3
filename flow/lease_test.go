package flow

import (
	"context"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/gatehouse-auth/gatehouse/internal/testredis"
	"github.com/gatehouse-auth/gatehouse/session"
)

// TestRefreshLeaseAcrossInstances: three instances (each its own Redis
// client, session manager and refresh group) get requests of one session
// whose token is due, all at once: the provider sees one refresh grant,
// and every request is served with its result.
func TestRefreshLeaseAcrossInstances(t *testing.T) {
	srv := testredis.Start(t)
	clock := &testClock{t: epoch}
	r0, rt, _ := refreshFixture(t, clock)
	type instance struct {
		m *session.Manager
		r *Refresher
	}
	var instances []instance
	for range 3 {
		client, err := rueidis.NewClient(rueidis.ClientOption{
			InitAddress: []string{srv.Addr()}, ForceSingleClient: true, DisableRetry: true, PipelineMultiplex: -1,
			Dialer: net.Dialer{Timeout: 2 * time.Second},
		})
		if client == nil {
			t.Fatal(err)
		}
		t.Cleanup(client.Close)
		store, err := session.NewRedisStore(session.RedisStoreOptions{Client: client, Now: clock.now})
		if err != nil {
			t.Fatal(err)
		}
		m, err := session.New(session.Options{Secrets: [][]byte{[]byte("0123456789abcdef0123456789abcdef")}, Now: clock.now, Store: store})
		if err != nil {
			t.Fatal(err)
		}
		r, err := NewRefresher(RefresherOptions{Client: r0.opts.Client, Now: clock.now, Lease: store})
		if err != nil {
			t.Fatal(err)
		}
		instances = append(instances, instance{m, r})
	}
	w := httptest.NewRecorder()
	if err := instances[0].m.Save(w, httptest.NewRequest("GET", "/", nil), expiringSession(clock, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	cookies := w.Result().Cookies()

	var wg sync.WaitGroup
	var mu sync.Mutex
	served := map[string]int{}
	for i := range 60 {
		in := instances[i%3]
		wg.Go(func() {
			req := httptest.NewRequest("GET", "/", nil)
			for _, c := range cookies {
				req.AddCookie(c)
			}
			s, _, err := in.m.Load(req)
			if err != nil {
				t.Error(err)
				return
			}
			fresh, updated, err := in.r.Fresh(context.Background(), s)
			if err != nil {
				t.Error(err)
				return
			}
			if updated {
				if err := in.m.Save(httptest.NewRecorder(), req, fresh); err != nil {
					t.Error(err)
				}
			}
			mu.Lock()
			served[fresh.AccessToken]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if n := rt.refresh.Load(); n != 1 {
		t.Fatalf("the provider saw %d refresh grants for one session on three instances, want 1", n)
	}
	if served["at-1"] != 60 {
		t.Fatalf("requests were served with %v, want all 60 with at-1", served)
	}
}
