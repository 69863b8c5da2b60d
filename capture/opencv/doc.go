// Package opencv is the only package that imports gocv: camera, stream and
// file sources, and the face detectors: YuNet, run by a small C++ shim with
// cv::dnn and decoded as OpenCV 4.6's cv::FaceDetectorYN does (plus the
// softmax the exported models lack), and OpenCV cascades. It also writes
// video clips drawn by its caller (WriteClip, WriteStillClip): the demo's
// scene and the tests' scenarios.
//
// It must close every gocv.Mat it creates and never write a camera frame
// anywhere.
package opencv
