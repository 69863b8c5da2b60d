package capture

import (
	"image"
	"math"
)

// blur makes the part of r inside img unrecognisable: it pixelates it into
// blocks of about a sixth of r's larger side, then box-blurs it twice with
// the block's size as radius, so neither features nor block edges remain.
// The region is blurred whatever part of it img holds, so a face cut by the
// crop's edge is blurred too.
func blur(img *image.RGBA, r image.Rectangle) {
	clip := r.Intersect(img.Rect)
	if clip.Empty() {
		return
	}
	block := max(2, (max(r.Dx(), r.Dy())+5)/6)
	pixelate(img, clip, block)
	boxBlur(img, clip, block)
	boxBlur(img, clip, block)
}

// pixelate fills each block of r, aligned on r.Min, with its mean colour.
func pixelate(img *image.RGBA, r image.Rectangle, block int) {
	for by := r.Min.Y; by < r.Max.Y; by += block {
		for bx := r.Min.X; bx < r.Max.X; bx += block {
			b := image.Rect(bx, by, bx+block, by+block).Intersect(r)
			var sum [3]int
			for y := b.Min.Y; y < b.Max.Y; y++ {
				p := img.Pix[img.PixOffset(b.Min.X, y):img.PixOffset(b.Max.X, y)]
				for i := 0; i < len(p); i += 4 {
					sum[0] += int(p[i])
					sum[1] += int(p[i+1])
					sum[2] += int(p[i+2])
				}
			}
			n := b.Dx() * b.Dy()
			for y := b.Min.Y; y < b.Max.Y; y++ {
				p := img.Pix[img.PixOffset(b.Min.X, y):img.PixOffset(b.Max.X, y)]
				for i := 0; i < len(p); i += 4 {
					p[i], p[i+1], p[i+2] = uint8(sum[0]/n), uint8(sum[1]/n), uint8(sum[2]/n)
				}
			}
		}
	}
}

// boxBlur replaces each pixel of r by the mean of the pixels of r within
// radius (a separable box filter, rows then columns).
func boxBlur(img *image.RGBA, r image.Rectangle, radius int) {
	w, h := r.Dx(), r.Dy()
	buf := make([]int, 3*max(w, h))
	out := make([]uint8, 3*max(w, h))
	line := func(n int, at func(i int) []uint8) {
		for i := 0; i < n; i++ {
			p := at(i)
			buf[3*i], buf[3*i+1], buf[3*i+2] = int(p[0]), int(p[1]), int(p[2])
		}
		for i := 0; i < n; i++ {
			lo, hi := max(0, i-radius), min(n-1, i+radius)
			var s [3]int
			for k := lo; k <= hi; k++ {
				s[0] += buf[3*k]
				s[1] += buf[3*k+1]
				s[2] += buf[3*k+2]
			}
			c := hi - lo + 1
			out[3*i], out[3*i+1], out[3*i+2] = uint8(s[0]/c), uint8(s[1]/c), uint8(s[2]/c)
		}
		for i := 0; i < n; i++ {
			copy(at(i)[:3], out[3*i:3*i+3])
		}
	}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		line(w, func(i int) []uint8 { o := img.PixOffset(r.Min.X+i, y); return img.Pix[o : o+4] })
	}
	for x := r.Min.X; x < r.Max.X; x++ {
		line(h, func(i int) []uint8 { o := img.PixOffset(x, r.Min.Y+i); return img.Pix[o : o+4] })
	}
}

// Sharpness is the variance of the Laplacian (4-neighbour kernel) of the
// gray pixels of r inside img: low for a blurred or flat face, high for a
// crisp one. 0 when r holds fewer than 3×3 pixels.
func Sharpness(img *image.RGBA, r image.Rectangle) float64 {
	r = r.Intersect(img.Rect)
	w, h := r.Dx(), r.Dy()
	if w < 3 || h < 3 {
		return 0
	}
	gray := make([]float64, w*h)
	for y := 0; y < h; y++ {
		p := img.Pix[img.PixOffset(r.Min.X, r.Min.Y+y):]
		for x := 0; x < w; x++ {
			gray[y*w+x] = 0.299*float64(p[4*x]) + 0.587*float64(p[4*x+1]) + 0.114*float64(p[4*x+2])
		}
	}
	var sum, sq float64
	for y := 1; y < h-1; y++ {
		for x := 1; x < w-1; x++ {
			i := y*w + x
			l := gray[i-1] + gray[i+1] + gray[i-w] + gray[i+w] - 4*gray[i]
			sum += l
			sq += l * l
		}
	}
	n := float64((w - 2) * (h - 2))
	mean := sum / n
	return math.Max(0, sq/n-mean*mean)
}
