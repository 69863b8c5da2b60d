// Package layout holds no code: its test checks that imports point the way
// docs/ARCHITECTURE.md draws them.
package layout
