package devidp

// SetMaxEntries lowers the cap on each state map so tests can reach it.
func SetMaxEntries(p *Provider, n int) {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	p.maxEntries = n
}
