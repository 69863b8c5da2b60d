// Package layout holds no code: its tests check that imports point the way
// docs/ARCHITECTURE.md draws them, and that the tests docs/SPEC.md names
// as holding the privacy rules exist.
package layout
