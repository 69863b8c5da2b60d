// Package opencv is the only package that imports gocv: camera and file
// sources, and the face detectors (YuNet through a small C++ shim over
// cv::FaceDetectorYN, and OpenCV cascades).
//
// It must close every gocv.Mat it creates and never write a frame or an
// image anywhere.
package opencv
