package opencv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
)

// onnxInputSize reads the width and height of the image input of an ONNX
// model: the first graph input shaped [N, 3, H, W] with fixed H and W. OpenCV
// 4.6 only runs YuNet models of a fixed size, and frames must be resized to
// it, so the size is read from the model rather than guessed from its name.
//
// It walks the protobuf wire format over the few fields it needs:
// ModelProto.graph (7) → GraphProto.input (11) → ValueInfoProto.type (2) →
// TypeProto.tensor_type (1) → Tensor.shape (2) → TensorShapeProto.dim (1) →
// Dimension.dim_value (1).
func onnxInputSize(model []byte) (image.Point, error) {
	var size image.Point
	found := false
	err := protoFields(model, func(num int, wire int, v []byte, _ uint64) error {
		if num != 7 || wire != wireBytes || found {
			return nil
		}
		return protoFields(v, func(num int, wire int, v []byte, _ uint64) error {
			if num != 11 || wire != wireBytes || found {
				return nil
			}
			dims, err := inputDims(v)
			if err != nil {
				return err
			}
			if len(dims) == 4 && dims[1] == 3 {
				found = true
				if dims[2] <= 0 || dims[3] <= 0 || dims[2] > 1<<14 || dims[3] > 1<<14 {
					return fmt.Errorf("the input is not of a fixed size (%v): OpenCV 4.6 needs a fixed-size model such as yunet_320x320.onnx", dims)
				}
				size = image.Pt(int(dims[3]), int(dims[2]))
			}
			return nil
		})
	})
	if err != nil {
		return image.Point{}, fmt.Errorf("onnx: %w", err)
	}
	if !found {
		return image.Point{}, errors.New("onnx: no image input shaped [N, 3, H, W]: is this an ONNX YuNet model?")
	}
	return size, nil
}

// inputDims returns the dimensions of a ValueInfoProto's tensor shape, -1
// for a dimension without a fixed value.
func inputDims(valueInfo []byte) ([]int64, error) {
	var dims []int64
	// type (2) → tensor_type (1) → shape (2) → dim (1)
	err := protoEach(valueInfo, []int{2, 1, 2, 1}, func(dim []byte) error {
		d := int64(-1)
		err := protoFields(dim, func(num, wire int, _ []byte, x uint64) error {
			if num == 1 && wire == wireVarint { // dim_value
				d = int64(x)
			}
			return nil
		})
		dims = append(dims, d)
		return err
	})
	return dims, err
}

// protoEach calls fn with each message reached from b through the
// length-delimited fields numbered path, one number per level.
func protoEach(b []byte, path []int, fn func(v []byte) error) error {
	if len(path) == 0 {
		return fn(b)
	}
	return protoFields(b, func(num, wire int, v []byte, _ uint64) error {
		if num != path[0] || wire != wireBytes {
			return nil
		}
		return protoEach(v, path[1:], fn)
	})
}

// Protobuf wire types.
const (
	wireVarint = 0
	wireI64    = 1
	wireBytes  = 2
	wireI32    = 5
)

// protoFields calls fn for each field of a protobuf message: its number, wire
// type, and the bytes (length-delimited fields) or the value (varints).
func protoFields(b []byte, fn func(num, wire int, v []byte, x uint64) error) error {
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return errors.New("truncated field key")
		}
		b = b[n:]
		num, wire := int(key>>3), int(key&7)
		if num <= 0 || key>>3 > 1<<29 {
			return fmt.Errorf("bad field number %d", key>>3)
		}
		var v []byte
		var x uint64
		switch wire {
		case wireVarint:
			if x, n = binary.Uvarint(b); n <= 0 {
				return errors.New("truncated varint")
			}
			b = b[n:]
		case wireI64, wireI32:
			n = 8
			if wire == wireI32 {
				n = 4
			}
			if len(b) < n {
				return errors.New("truncated fixed-size field")
			}
			b = b[n:]
		case wireBytes:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return errors.New("truncated length-delimited field")
			}
			v, b = b[n:n+int(l)], b[n+int(l):]
		default:
			return fmt.Errorf("unsupported wire type %d", wire)
		}
		if err := fn(num, wire, v, x); err != nil {
			return err
		}
	}
	return nil
}
