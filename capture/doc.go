// Package capture holds the pure-Go rules for faces: boxes, the consent zone,
// the "exactly one face in the zone" rule, best-of-window scoring, the crop
// with its margin, the blurring of any other face inside it, and JPEG
// encoding.
//
// It must never choose a frame with more than one face in the zone, and never
// return more than the face crop of the visitor (never a whole frame).
// It imports no other consentcam package and no cgo.
package capture
