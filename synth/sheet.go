package synth

import (
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// SheetCell is the side of one thumbnail of a contact sheet, in pixels.
const SheetCell = 112

// Sheet writes a contact sheet PNG of the written dataset to path, for a human to look at: one
// row per ACTION/OBJECT folder, with up to two exocentric images, the first egocentric training
// image, the first test image, and that test image with its GT heatmap tinted red over it.
func (r *Result) Sheet(path string) error {
	type row struct{ exo, ego, test []string }
	rows := map[string]*row{}
	var keys []string
	for _, f := range r.Files {
		parts := strings.Split(filepath.ToSlash(f), "/")
		// data/Seen/{trainset,testset}/{exocentric,egocentric}/ACTION/OBJECT/NAME.jpg
		if len(parts) != 7 || parts[0] != "data" || !strings.HasSuffix(f, ".jpg") {
			continue
		}
		key := parts[4] + "/" + parts[5]
		if rows[key] == nil {
			rows[key] = &row{}
			keys = append(keys, key)
		}
		rw := rows[key]
		switch {
		case parts[2] == "testset":
			rw.test = append(rw.test, f)
		case parts[3] == "exocentric":
			rw.exo = append(rw.exo, f)
		default:
			rw.ego = append(rw.ego, f)
		}
	}
	if len(keys) == 0 {
		return fmt.Errorf("synth: no images to put on a contact sheet")
	}
	sort.Strings(keys)
	const cols = 5
	sheet := image.NewRGBA(image.Rect(0, 0, cols*SheetCell, len(keys)*SheetCell))
	for i := range sheet.Pix {
		sheet.Pix[i] = 255
	}
	for y, key := range keys {
		rw := rows[key]
		var cells []string
		cells = append(cells, rw.exo[:min(2, len(rw.exo))]...)
		for len(cells) < 2 {
			cells = append(cells, "")
		}
		cells = append(cells, first(rw.ego), first(rw.test))
		for x, f := range cells {
			if f == "" {
				continue
			}
			img, err := readJPEG(filepath.Join(r.Dir, f))
			if err != nil {
				return err
			}
			paste(sheet, img, x*SheetCell, y*SheetCell)
		}
		if t := first(rw.test); t != "" {
			img, err := readJPEG(filepath.Join(r.Dir, t))
			if err != nil {
				return err
			}
			gt := strings.Replace(strings.TrimSuffix(t, ".jpg")+".png", "/testset/egocentric/", "/testset/GT/", 1)
			g, err := readPNG(filepath.Join(r.Dir, gt))
			if err != nil {
				return err
			}
			over := image.NewRGBA(img.Bounds())
			for py := img.Bounds().Min.Y; py < img.Bounds().Max.Y; py++ {
				for px := img.Bounds().Min.X; px < img.Bounds().Max.X; px++ {
					cr, cg, cb, _ := img.At(px, py).RGBA()
					gv, _, _, _ := g.At(px, py).RGBA()
					a := float64(gv) / 65535 * 0.8
					over.Set(px, py, color.RGBA{
						R: uint8((1-a)*float64(cr>>8) + a*255), G: uint8((1 - a) * float64(cg>>8)),
						B: uint8((1 - a) * float64(cb>>8)), A: 255})
				}
			}
			paste(sheet, over, 4*SheetCell, y*SheetCell)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("synth: contact sheet: %w", err)
	}
	if err := png.Encode(f, sheet); err != nil {
		f.Close()
		return fmt.Errorf("synth: contact sheet %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("synth: contact sheet %s: %w", path, err)
	}
	return nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func readJPEG(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	defer f.Close()
	img, err := jpeg.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("synth: %s: %w", path, err)
	}
	return img, nil
}

func readPNG(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("synth: %s: %w", path, err)
	}
	return img, nil
}

// paste draws img scaled (nearest neighbour, aspect kept) into the SheetCell square at (x0, y0).
func paste(dst *image.RGBA, img image.Image, x0, y0 int) {
	b := img.Bounds()
	scale := float64(SheetCell-4) / float64(max(b.Dx(), b.Dy()))
	w, h := int(float64(b.Dx())*scale), int(float64(b.Dy())*scale)
	ox, oy := x0+(SheetCell-w)/2, y0+(SheetCell-h)/2
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			sx := b.Min.X + min(b.Dx()-1, int(float64(x)/scale))
			sy := b.Min.Y + min(b.Dy()-1, int(float64(y)/scale))
			dst.Set(ox+x, oy+y, img.At(sx, sy))
		}
	}
}
