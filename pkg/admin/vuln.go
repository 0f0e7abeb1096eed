package admin

import "net/http"

// registerVuln adds the vulnerability data endpoints.
func (h *handler) registerVuln(mux *http.ServeMux) {}
