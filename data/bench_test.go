package data

import (
	"math/rand/v2"
	"testing"

	"github.com/affgd/affgd/torch"
)

// benchImage is an h×w noise image (content does not change the resampler's work).
func benchImage(h, w int) Image {
	r := rand.New(rand.NewPCG(7, uint64(h*w)))
	pix := make([]uint8, h*w*3)
	for i := range pix {
		pix[i] = uint8(r.Uint32())
	}
	return Image{W: w, H: h, Pix: pix}
}

// BenchmarkTrainTransform times TrainTransform (resize the shorter side to 256, crop 224, flip,
// normalise) on a 640×480 landscape and a 480×640 portrait image, the AGD20K-typical sizes;
// compare with torchvision's Compose on a PIL image (tests/data/bench_data.py --transform 200).
// It runs with one intra-op thread (warmUp).
func BenchmarkTrainTransform(b *testing.B) {
	for _, c := range []struct {
		name string
		h, w int
	}{{"640x480", 480, 640}, {"480x640", 640, 480}} {
		b.Run(c.name, func(b *testing.B) {
			img := benchImage(c.h, c.w)
			oh, ow := ResizedSize(img.H, img.W, ResizeSize)
			rng := rand.New(rand.NewPCG(1, 2))
			warmUp(b, img)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cf := DrawCropFlip(rng, oh, ow, CropSize)
				err := torch.WithScope(func(*torch.Scope) {
					if _, err := TrainTransform(img, ResizeSize, CropSize, cf); err != nil {
						b.Fatal(err)
					}
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTestTransform times TestTransform (resize to 224×224, normalise) on a 640×480 image.
func BenchmarkTestTransform(b *testing.B) {
	img := benchImage(480, 640)
	warmUp(b, img)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := torch.WithScope(func(*torch.Scope) {
			if _, err := TestTransform(img, CropSize); err != nil {
				b.Fatal(err)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTrainPixels times the resampling alone (resample.c: resize, crop and flip into a
// byte buffer), without the normalisation.
func BenchmarkTrainPixels(b *testing.B) {
	img := benchImage(480, 640)
	oh, ow := ResizedSize(img.H, img.W, ResizeSize)
	rng := rand.New(rand.NewPCG(1, 2))
	dst := make([]byte, CropSize*CropSize*3)
	warmUp(b, img)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := trainPixels(dst, img, ResizeSize, CropSize, DrawCropFlip(rng, oh, ow, CropSize)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNormalize times the to-tensor and normalisation of one 224×224 crop.
func BenchmarkNormalize(b *testing.B) {
	px := benchImage(CropSize, CropSize).Pix
	warmUp(b, benchImage(CropSize, CropSize))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := torch.WithScope(func(*torch.Scope) {
			if _, err := normalizeBytes(px, 1, CropSize, CropSize, false); err != nil {
				b.Fatal(err)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// warmUp sets libtorch to one intra-op thread (PIL and the loader's workers run each transform
// on one core; on a shared machine a second OpenMP thread waiting for a busy core made whole
// runs 10× slower) and runs one TestTransform of img untimed.
func warmUp(b *testing.B, img Image) {
	b.Helper()
	if err := torch.SetNumThreads(1); err != nil {
		b.Fatal(err)
	}
	err := torch.WithScope(func(*torch.Scope) {
		if _, err := TestTransform(img, CropSize); err != nil {
			b.Fatal(err)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
}
