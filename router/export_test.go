package router

// PlainAnswer exposes parsePlainAnswer to the differential fuzz test.
func PlainAnswer(b []byte) (code int, length int64, fields []byte, size int, ok bool) {
	a, ok := parsePlainAnswer(b)
	return a.code, a.length, a.fields, a.size, ok
}

// PlainRequest exposes parsePlainRequest to the differential fuzz test.
func PlainRequest(b []byte) (method string, target, host, fields []byte, size int, ok bool) {
	r, ok := parsePlainRequest(b)
	return r.method, r.target, r.host, r.fields, r.size, ok
}
