package api

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3 document of the API.
//
//go:embed openapi.json
var OpenAPI []byte

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request, _ Identity) error {
	w.Header().Set("Content-Type", "application/json")
	w.Write(OpenAPI)
	return nil
}
