package router

// PlainAnswer exposes parsePlainAnswer to the differential fuzz test.
func PlainAnswer(b []byte) (code int, length int64, fields []byte, size int, ok bool) {
	a, ok := parsePlainAnswer(b)
	return a.code, a.length, a.fields, a.size, ok
}
