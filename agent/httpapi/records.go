package httpapi

import (
	"io"
	"net/http"
	"strings"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
)

// maxTokenBody is read from a POST: one byte over the most a token may
// have, so the verifier can refuse it as too-large.
const maxTokenBody = consent.MaxTokenSize + 1

func (s *Server) handleRecords(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	sel := store.Selector{Subject: q.Get("subject"), Visit: q.Get("visit")}
	if (sel.Subject == "") == (sel.Visit == "") {
		return badRequest("give exactly one of subject and visit")
	}
	recs, err := s.Core.Records(sel)
	if err != nil {
		return err
	}
	if recs == nil {
		recs = []*store.Record{}
	}
	writeJSON(w, http.StatusOK, recs)
	return nil
}

// handleImage serves a record's image for a purpose it is still tagged with;
// the core audits the read.
func (s *Server) handleImage(w http.ResponseWriter, r *http.Request) error {
	id, purpose := r.PathValue("id"), r.URL.Query().Get("purpose")
	if purpose == "" {
		return badRequest("name the purpose of this read: ?purpose=…")
	}
	image, err := s.Core.ReadImage(id, purpose, RoleOperator)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(image)
	return nil
}

// VisitResponse is the answer of POST /v1/visits to an accepted token.
type VisitResponse struct {
	Visit   string `json:"visit"`
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
	// Waiting is how many visits are before this one at the camera.
	Waiting int `json:"waiting"`
}

func (s *Server) handleVisit(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxTokenBody))
	if err != nil {
		return badRequest("read body: %v", err)
	}
	acc, err := s.Core.Consent(r.Context(), []byte(strings.TrimSpace(string(body))))
	if err != nil {
		return err
	}
	cs := acc.Consent
	writeJSON(w, http.StatusAccepted, VisitResponse{Visit: cs.Visit, Subject: cs.Subject, Seq: acc.Seq, Waiting: acc.Waiting})
	return nil
}
