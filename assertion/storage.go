package assertion

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
)

// Storage keeps the key ring that instances share. certmagic.Storage,
// which Caddy's storage modules implement, satisfies it. Load of a missing
// key returns an error for which errors.Is(err, fs.ErrNotExist) holds.
// Lock is a cluster-wide named lock; Unlock releases it. Implementations
// must be safe for concurrent use and honour the context.
type Storage interface {
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
	Store(ctx context.Context, key string, value []byte) error
	Load(ctx context.Context, key string) ([]byte, error)
}

// MemoryStorage is a Storage held in this process: for tests and a single
// instance (its keys do not survive a restart, so a restart rotates them
// abruptly). The zero value is ready to use.
type MemoryStorage struct {
	mu    sync.Mutex
	data  map[string][]byte
	locks map[string]chan struct{} // closed when the lock is released
}

// Lock takes the named lock, waiting until it is free or ctx ends.
func (m *MemoryStorage) Lock(ctx context.Context, name string) error {
	for {
		m.mu.Lock()
		held, ok := m.locks[name]
		if !ok {
			if m.locks == nil {
				m.locks = make(map[string]chan struct{})
			}
			m.locks[name] = make(chan struct{})
			m.mu.Unlock()
			return nil
		}
		m.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Unlock releases the named lock.
func (m *MemoryStorage) Unlock(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	held, ok := m.locks[name]
	if !ok {
		return fmt.Errorf("assertion: memory storage: lock %q is not held", name)
	}
	delete(m.locks, name)
	close(held)
	return nil
}

// Store keeps a copy of value at key.
func (m *MemoryStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.data == nil {
		m.data = make(map[string][]byte)
	}
	m.data[key] = append([]byte(nil), value...)
	return nil
}

// Load returns a copy of the value at key, or an error wrapping
// fs.ErrNotExist.
func (m *MemoryStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.data[key]
	if !ok {
		return nil, fmt.Errorf("assertion: memory storage: %q: %w", key, fs.ErrNotExist)
	}
	return append([]byte(nil), v...), nil
}

// Delete removes key (a missing key is not an error), as an operator
// deleting the ring document would.
func (m *MemoryStorage) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data, key)
	return nil
}

// errNotExist reports whether err means "no such key".
func errNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
