// Package report turns affgd's raw figures into what a person reads: the mean METHOD.md §7
// metrics of an evaluation (overall and per action class) as a text table and as JSON, heatmap
// overlays and grey maps as PNG files for `affgd predict`, and a PNG plot of a training run's
// per-epoch losses and test KLD.
//
// Everything that colours or resizes a map runs as tensor operations (libtorch); Go code only
// copies the finished bytes into an image for encoding. Every file is written atomically: to a
// temporary file in the destination folder, then renamed over the destination, so a reader never
// sees a half-written image.
package report
