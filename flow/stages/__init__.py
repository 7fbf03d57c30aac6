"""What the build steps do after export: conversion, verification, estimates, vendor runs, packaging."""
