package opencv

import (
	"encoding/binary"
	"image"
	"os"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/internal/testenv"
)

// protoMsg encodes length-delimited protobuf fields, enough to build small
// ONNX models for the parser.
func protoMsg(fields ...[]byte) []byte {
	var b []byte
	for _, f := range fields {
		b = append(b, f...)
	}
	return b
}

func protoBytes(num int, v []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(num<<3|wireBytes))
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func protoVarint(num int, v uint64) []byte {
	return binary.AppendUvarint(binary.AppendUvarint(nil, uint64(num<<3|wireVarint)), v)
}

// onnxModel is a ModelProto whose graph has one input of the given shape
// (-1 for a named, dynamic dimension).
func onnxModel(dims ...int64) []byte {
	var shape []byte
	for _, d := range dims {
		dim := protoBytes(2, []byte("batch"))
		if d >= 0 {
			dim = protoVarint(1, uint64(d))
		}
		shape = append(shape, protoBytes(1, dim)...)
	}
	tensor := protoMsg(protoVarint(1, 1), protoBytes(2, shape))
	input := protoMsg(protoBytes(1, []byte("input")), protoBytes(2, protoBytes(1, tensor)))
	graph := protoMsg(protoBytes(2, []byte("g")), protoBytes(11, input))
	return protoMsg(protoVarint(1, 7), protoBytes(2, []byte("pytorch")), protoBytes(7, graph))
}

func TestONNXInputSize(t *testing.T) {
	tests := []struct {
		name    string
		model   []byte
		want    image.Point
		wantErr string
	}{
		{"fixed 320x240", onnxModel(1, 3, 240, 320), image.Pt(320, 240), ""},
		{"dynamic size", onnxModel(1, 3, -1, -1), image.Point{}, "fixed size"},
		{"gray input", onnxModel(1, 1, 320, 320), image.Point{}, "no image input"},
		{"empty file", nil, image.Point{}, "no image input"},
		{"truncated", onnxModel(1, 3, 240, 320)[:20], image.Point{}, "truncated"},
		{"text", []byte("not a model at all"), image.Point{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := onnxInputSize(tt.model)
			if tt.want != (image.Point{}) {
				if err != nil || got != tt.want {
					t.Fatalf("onnxInputSize = %v, %v; want %v", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("onnxInputSize = %v, want an error", got)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want it to mention %q", err, tt.wantErr)
			}
		})
	}
	t.Run("real model", func(t *testing.T) {
		data, err := os.ReadFile(testenv.Model(t, "yunet_640x640.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := onnxInputSize(data); err != nil || got != image.Pt(640, 640) {
			t.Errorf("onnxInputSize = %v, %v; want 640x640", got, err)
		}
	})
}

func FuzzONNXInputSize(f *testing.F) {
	f.Add(onnxModel(1, 3, 240, 320))
	f.Add(onnxModel(1, 3, -1, -1))
	f.Add(onnxModel(1, 3, 1<<40, 5))
	f.Add([]byte{0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		size, err := onnxInputSize(data)
		if err == nil && (size.X <= 0 || size.Y <= 0 || size.X > 1<<14 || size.Y > 1<<14) {
			t.Fatalf("accepted input size %v", size)
		}
	})
}
