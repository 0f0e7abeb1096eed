package admin

import "net/http"

// registerTransfer adds the ownership transfer endpoints.
func (h *handler) registerTransfer(mux *http.ServeMux) {}
