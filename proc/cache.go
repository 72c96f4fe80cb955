package proc

// PageCache is Memory that reads whole pages of another Memory once and
// serves later reads from them: a stack walk touches a few pages many
// times. Ranges whose pages cannot be read whole are read directly, so it
// fails exactly where the underlying Memory does. Use it only while the
// memory cannot change (the thread is stopped), and drop it after.
type PageCache struct {
	Mem   Memory
	pages map[uint64][]byte // page number -> contents; nil: not readable whole
	// Reads counts the reads made of Mem.
	Reads int
}

const cachePageSize = 4096

// ReadAt implements Memory.
func (c *PageCache) ReadAt(p []byte, addr uint64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	first, last := addr/cachePageSize, (addr+uint64(len(p))-1)/cachePageSize
	if addr+uint64(len(p))-1 < addr || last-first > 1 {
		c.Reads++
		return c.Mem.ReadAt(p, addr) // wraps around, or longer than a page
	}
	if c.pages == nil {
		c.pages = make(map[uint64][]byte)
	}
	n := 0
	for pg := first; pg <= last; pg++ {
		data, seen := c.pages[pg]
		if !seen {
			buf := make([]byte, cachePageSize)
			c.Reads++
			if _, err := c.Mem.ReadAt(buf, pg*cachePageSize); err == nil {
				data = buf
			}
			c.pages[pg] = data
		}
		if data == nil {
			c.Reads++
			return c.Mem.ReadAt(p, addr)
		}
		lo := uint64(0)
		if pg == first {
			lo = addr % cachePageSize
		}
		n += copy(p[n:], data[lo:])
	}
	return n, nil
}
