package backup

import (
	"context"
	"errors"
	"io"
	"sync"
)

// chunkSize and pipeChunks size a chunkPipe: up to pipeChunks chunks of
// chunkSize bytes wait between the two sides, so each side runs ahead of
// the other by a few MiB instead of meeting it at every write as with an
// io.Pipe.
const (
	chunkSize  = 1 << 20
	pipeChunks = 8
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}

// chunkPipe is a buffered pipe: one goroutine writes (write, close), another
// reads. Memory is bounded by pipeChunks+1 chunks.
type chunkPipe struct {
	ch   chan *[]byte
	fill *[]byte // writer: the chunk being filled
	err  error   // writer's error, set before ch is closed; nil means EOF

	cur  *[]byte // reader: the chunk being read
	off  int
	done chan struct{} // closed when the reader stops reading
	once sync.Once
}

func newChunkPipe() *chunkPipe {
	return &chunkPipe{ch: make(chan *[]byte, pipeChunks), done: make(chan struct{})}
}

// errReaderGone is returned to a writer whose reader stopped.
var errReaderGone = errors.New("the reading side stopped")

// write copies p into the pipe, waiting while it is full.
func (p *chunkPipe) write(ctx context.Context, b []byte) error {
	for len(b) > 0 {
		if p.fill == nil {
			p.fill = chunkPool.Get().(*[]byte)
			*p.fill = (*p.fill)[:0]
		}
		k := copy((*p.fill)[len(*p.fill):cap(*p.fill)], b)
		*p.fill = (*p.fill)[:len(*p.fill)+k]
		b = b[k:]
		if len(*p.fill) == cap(*p.fill) {
			if err := p.send(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *chunkPipe) send(ctx context.Context) error {
	select {
	case p.ch <- p.fill:
		p.fill = nil
		return nil
	case <-p.done:
		return errReaderGone
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// close flushes what is buffered and ends the stream: the reader gets io.EOF
// when err is nil, err otherwise (and then need not see the buffered data).
func (p *chunkPipe) close(ctx context.Context, err error) error {
	var serr error
	if err == nil && p.fill != nil && len(*p.fill) > 0 {
		serr = p.send(ctx)
	}
	if p.fill != nil {
		chunkPool.Put(p.fill)
		p.fill = nil
	}
	if serr != nil && err == nil {
		err = serr
	}
	p.err = err
	close(p.ch)
	return serr
}

// Read implements io.Reader for the reading side.
func (p *chunkPipe) Read(b []byte) (int, error) {
	for p.cur == nil || p.off == len(*p.cur) {
		if p.cur != nil {
			chunkPool.Put(p.cur)
			p.cur = nil
		}
		c, ok := <-p.ch
		if !ok {
			if p.err != nil {
				return 0, p.err
			}
			return 0, io.EOF
		}
		p.cur, p.off = c, 0
	}
	n := copy(b, (*p.cur)[p.off:])
	p.off += n
	return n, nil
}

// drain is called by the reader when it stops: it releases a waiting writer
// and returns the buffered chunks to the pool.
func (p *chunkPipe) drain() {
	p.once.Do(func() { close(p.done) })
	if p.cur != nil {
		chunkPool.Put(p.cur)
		p.cur = nil
	}
	for {
		select {
		case c, ok := <-p.ch:
			if !ok {
				return
			}
			chunkPool.Put(c)
		default:
			return
		}
	}
}
